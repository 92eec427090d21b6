// What relay tests check on the broker side (relay_test, relay_pg_crash_test): everything in a
// topic in stream order, and per-key order of first deliveries. Needs dtx_brokers.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "brokers/broker.h"

namespace dtx {

// Everything in the stream, in stream order (a fresh consumer group reads from the start). AMQP
// keeps messages only for queues bound before the publish: there, name the group bound then.
// `first_wait`: how long to wait for the first message (a Kafka group's first join takes ~3 s).
inline std::vector<brokers::Message> ReadStream(
    const std::string& url, const std::string& topic, std::string group = "",
    std::chrono::milliseconds first_wait = std::chrono::milliseconds(0)) {
  static int groups = 0;
  if (group.empty()) group = "check" + std::to_string(++groups);
  auto c = brokers::OpenConsumer(url, {.group = group, .consumer = "c", .topics = {topic}});
  std::vector<brokers::Message> out;
  const auto settled = std::chrono::steady_clock::now() + first_wait;
  for (int empty = 0; empty < 3;) {
    auto r = c.value()->Fetch(1000, std::chrono::milliseconds(50));
    if (!r.ok() || r.value().empty()) {
      if (!out.empty() || std::chrono::steady_clock::now() >= settled) ++empty;
      continue;
    }
    for (auto& d : r.value()) {
      EXPECT_TRUE(c.value()->Ack(d).ok());  // NATS: unacknowledged deliveries cap what comes
      out.push_back(std::move(d.message));
    }
  }
  return out;
}

// Each key's first deliveries must come in increasing sequence (payload = "key:seq").
inline void ExpectPerKeyOrder(const std::vector<brokers::Message>& msgs) {
  std::set<std::string> seen;
  std::map<std::string, int> last;
  for (const brokers::Message& m : msgs) {
    if (!seen.insert(m.message_id).second) continue;  // a duplicate (at least once): skipped
    int seq = std::stoi(m.payload.substr(m.payload.find(':') + 1));
    auto it = last.find(m.key);
    if (it != last.end()) {
      EXPECT_GT(seq, it->second) << "key " << m.key << " out of order";
    }
    last[m.key] = seq;
  }
}

}  // namespace dtx
