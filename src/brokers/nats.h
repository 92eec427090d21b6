// The NATS JetStream adapter (libnats, the cnats C client). Publish = asynchronous JetStream
// publishes of the whole batch to the subject named by the topic, then a bounded wait for every
// publish ack (the stream stored it); the header Nats-Msg-Id carries the message id, so JetStream
// drops a re-publish inside the stream's duplicate window (2 min) by itself. Each topic's stream
// (name: the topic with '.' replaced by '_', capturing subject = the topic, file storage) is
// created on first use unless a stream already captures the subject. Consume = a durable pull
// consumer per topic (durable name = the group, explicit acks, AckWait = redeliver_after,
// MaxAckPending = max_unacked), ack after the consumer's commit. A consumer that starts while the
// durable has unacknowledged deliveries (of a crashed incarnation) fetches only after
// redeliver_after: JetStream redelivers expired deliveries before new messages, so per-subject
// order survives a consumer crash, at the price of that wait. Durability of an acknowledged publish
// is JetStream's: file storage survives a kill -9 of the server (the OS has the pages); nats-server
// fsyncs every 2 minutes by default
// (`sync_interval: always` for no loss on a power cut; docs/outbox.md).
#pragma once

#include <memory>
#include <string_view>

#include "brokers/broker.h"

namespace dtx::brokers {

Result<std::unique_ptr<Publisher>> OpenNatsPublisher(std::string_view url);
Result<std::unique_ptr<Consumer>> OpenNatsConsumer(std::string_view url, ConsumerOptions options);

}  // namespace dtx::brokers
