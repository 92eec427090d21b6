// The AMQP 0-9-1 (RabbitMQ) adapter (librabbitmq, the rabbitmq-c client, synchronous API).
// URL: amqp://[user[:password]@]host[:port][/vhost][?exchange=NAME] (defaults guest:guest, 5672,
// vhost "/", exchange "dtx"; a vhost other than "/" is written percent-encoded, "/" as %2f).
//
// Publish = the whole batch on one channel in confirm mode, each message persistent
// (delivery_mode 2) and mandatory, to the durable topic exchange (declared on connect) with the
// topic as routing key; properties: message_id = the message id, headers = the message's headers
// plus "dtx-key" = the ordering key; then a bounded wait for the publisher confirms (a persistent
// message routed to a durable queue is confirmed once the queue wrote it to disk). A message no
// queue is bound for comes back (basic.return) and is reported kUnavailable ("unroutable"): it
// stays pending in the outbox until a consumer declared its queue, instead of being confirmed
// and dropped. A nack or a lost connection is kUnavailable too; a message AMQP cannot carry (a
// header name over 255 bytes) is refused (kInvalidArgument).
//
// Consume = one durable queue per group (named EXCHANGE.GROUP, e.g. dtx.payment; argument
// x-single-active-consumer, so one consumer of the group receives at a time and the queue's order
// is the delivery order), bound to the exchange with each topic as routing key; basic.consume with
// manual acks and prefetch = max_unacked (at most 65535); basic.ack after the consumer's commit.
// Deliveries not acknowledged when the consumer's connection ends (a kill -9 closes its socket;
// a hung consumer misses heartbeats, sent every redeliver_after / 2) go back to the queue at their
// place and come again, first, to the next active consumer. Handles are "generation:delivery tag";
// an ack for a delivery of an earlier connection is kUnavailable (the broker delivers it again).
#pragma once

#include <memory>
#include <string_view>

#include "brokers/broker.h"

namespace dtx::brokers {

Result<std::unique_ptr<Publisher>> OpenAmqpPublisher(std::string_view url);
Result<std::unique_ptr<Consumer>> OpenAmqpConsumer(std::string_view url, ConsumerOptions options);

}  // namespace dtx::brokers
