// The broker seam shared by `dtx relay` (publish with ack) and the inbox (consume, ack after the
// consumer's commit). One adapter per broker behind these two small interfaces; the URL's scheme
// picks it (redis://, nats://; docs/outbox.md lists the brokers and their settings). Broker client
// libraries are linked only by this module (dtx_brokers), never by the coordinator's core.
//
// Thread-safety: a Publisher or Consumer is one connection; use each from one thread at a time.
// Open as many as there are threads.
//
// How it fails: Open* fail only on a URL they cannot parse or an unknown scheme (kInvalidArgument);
// connecting is lazy, so an unreachable broker shows as kUnavailable from Publish/Fetch, and the
// next call connects again. Publish reports one Status per message: kUnavailable / kTimeout mean
// the message's fate is unknown (transport failure: publish it again later), any other error code
// means the broker refused that message (e.g. a Redis key of the wrong type).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/status.h"

namespace dtx::brokers {

struct Message {
  std::string topic;       // stream / subject / Kafka topic / AMQP routing key
  std::string key;         // ordering key (Kafka partition key; a field or header elsewhere)
  std::string message_id;  // what consumers deduplicate on
  std::string payload;
  std::vector<std::pair<std::string, std::string>> headers;
};

class Publisher {
 public:
  virtual ~Publisher() = default;
  // Sends every message (pipelined, in order) and waits for the broker's acknowledgements, at most
  // `timeout` in total. Returns one Status per message, in the batch's order; ok = acknowledged.
  virtual std::vector<Status> Publish(const std::vector<Message>& batch,
                                      std::chrono::milliseconds timeout) = 0;
  // The URL without credentials, for logs.
  virtual std::string Describe() const = 0;
};

struct Delivery {
  Message message;
  std::string handle;  // the broker's id of this delivery (stream entry id, delivery tag, ...)
};

struct ConsumerOptions {
  std::string group;                // consumer group (Redis group, NATS durable, Kafka group.id)
  std::string consumer;             // this consumer's stable name within the group
  std::vector<std::string> topics;  // 1..16
  // A delivery not acknowledged for this long by a consumer of the group that died is taken over.
  std::chrono::milliseconds redeliver_after{30'000};
  // Deliveries handed out and not yet acknowledged, at most (NATS MaxAckPending; Redis: no
  // limit). Keep it at the consumer's fetch size: a delivery that is never acknowledged then holds
  // the later ones back until it is delivered again, instead of being overtaken.
  size_t max_unacked = 1000;
};

class Consumer {
 public:
  virtual ~Consumer() = default;
  // Up to `max` deliveries (1..1000), waiting at most `wait` when none is ready: first this
  // consumer's own unacknowledged deliveries (after a restart), then those abandoned by dead
  // consumers of the group, then new messages. An empty vector when nothing came in time.
  virtual Result<std::vector<Delivery>> Fetch(size_t max, std::chrono::milliseconds wait) = 0;
  // Acknowledges one delivery: the broker will not deliver it again.
  virtual Status Ack(const Delivery& d) = 0;
};

// Credentials of a dtx:// or dtxs:// sink (a coordinator started with --api-token, or serving
// HTTPS with a certificate a private CA signed). Other sinks take none.
struct PublisherOptions {
  std::string token{};    // sent as "Authorization: Bearer <token>"; empty: none
  std::string ca_file{};  // dtxs:// only: PEM CA certificates trusted besides the system's store
};

// kInvalidArgument for an unknown scheme (the message lists the known ones), a malformed URL, or
// options the sink does not take (an unreadable CA file, a token with control characters).
Result<std::unique_ptr<Publisher>> OpenPublisher(std::string_view url,
                                                 const PublisherOptions& options = {});
Result<std::unique_ptr<Consumer>> OpenConsumer(std::string_view url, ConsumerOptions options);

// host:port of a URL "scheme://host:port" (default port when absent); kInvalidArgument otherwise.
struct HostPort {
  std::string host;
  int port = 0;
};
Result<HostPort> ParseHostPort(std::string_view url, std::string_view scheme, int default_port);

}  // namespace dtx::brokers
