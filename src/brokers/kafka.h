// The Kafka adapter (librdkafka). URL: kafka://host:port[,host:port...][?name=value&...] (the
// bootstrap servers, then librdkafka settings that override the adapter's, e.g.
// security.protocol=SASL_SSL, or session.timeout.ms for a test cluster; Describe() omits them).
// Publish = an idempotent producer (enable.idempotence=true, acks=all, so retries inside
// librdkafka neither duplicate nor reorder a partition's messages) producing the whole batch with
// the ordering key as the Kafka key (one key -> one partition -> its order) and the message id and
// headers as Kafka headers (dtx-message-id + the outbox headers), then waiting, bounded, for every
// delivery report; ok = the partition leader and its in-sync replicas have it. Consume = a
// consumer group (group.id = the group, auto.offset.reset=earliest, no auto commit); Ack commits
// the delivery's offset + 1 synchronously, after the consumer's commit. An ack covers the earlier
// offsets of its partition, which the inbox acknowledged before (it applies in order).
// Redelivery after a consumer crash comes from the last committed offset; a dead member's
// partitions move after session.timeout.ms (redeliver_after, at least 6 s, unless the URL sets
// it; heartbeat.interval.ms = a third of it).
#pragma once

#include <memory>
#include <string_view>

#include "brokers/broker.h"

namespace dtx::brokers {

Result<std::unique_ptr<Publisher>> OpenKafkaPublisher(std::string_view url);
Result<std::unique_ptr<Consumer>> OpenKafkaConsumer(std::string_view url, ConsumerOptions options);

}  // namespace dtx::brokers
