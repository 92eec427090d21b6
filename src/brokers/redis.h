// The Redis Streams adapter (hiredis, synchronous API). Publish = pipelined XADD of the fields
// message_id, key, headers (JSON object) and payload to the stream named by the topic; the reply
// with the entry id is the acknowledgement. Consume = XREADGROUP in a consumer group (created at
// the stream's start with MKSTREAM), own pending entries first after a restart, XAUTOCLAIM for the
// entries of dead consumers, XACK after the consumer's commit. Durability of an acknowledged XADD
// is Redis's: run it with appendonly yes (appendfsync always for no loss on a power cut;
// docs/outbox.md).
#pragma once

#include <memory>
#include <string_view>

#include "brokers/broker.h"

namespace dtx::brokers {

Result<std::unique_ptr<Publisher>> OpenRedisPublisher(std::string_view url);
Result<std::unique_ptr<Consumer>> OpenRedisConsumer(std::string_view url, ConsumerOptions options);

}  // namespace dtx::brokers
