// Tests of the AMQP adapter against a real rabbitmq-server started privately on 127.0.0.1 (one
// server for the suite: it boots in ~5-10 s), each test on its own queue (group) and topics.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "brokers/broker.h"
#include "brokers/broker_process.h"
#include "brokers/require_broker.h"

namespace dtx::brokers {
namespace {

using namespace std::chrono_literals;

std::vector<Message> Batch(const std::string& topic, int n, int from = 0) {
  std::vector<Message> out;
  for (int i = from; i < from + n; ++i) {
    out.push_back({.topic = topic,
                   .key = "k" + std::to_string(i % 3),
                   .message_id = "m" + std::to_string(i),
                   .payload = "p" + std::to_string(i),
                   .headers = {{"correlation_id", "c" + std::to_string(i)}}});
  }
  return out;
}

class AmqpBroker : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::BrokerAvailable("amqp")) return;
    dir_ = "/tmp/dtx-amqp-test-" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    server_ = new testing::BrokerProcess("amqp", dir_);
    started_ = server_->Start();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    std::filesystem::remove_all(dir_);
  }
  void SetUp() override {
    DTX_REQUIRE_BROKER("amqp");
    ASSERT_TRUE(started_) << "rabbitmq-server did not start; log: " << server_->log_path();
    if (!server_->running()) {
      ASSERT_TRUE(server_->Start());
    }
  }

  static std::unique_ptr<Consumer> NewConsumer(const std::string& group,
                                               const std::vector<std::string>& topics,
                                               size_t max_unacked = 100) {
    auto c = OpenConsumer(
        server_->Url(),
        {.group = group, .consumer = "c", .topics = topics, .max_unacked = max_unacked});
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return std::move(c.value());
  }
  static std::vector<Delivery> FetchAll(Consumer& c, size_t want, int rounds = 50) {
    std::vector<Delivery> got;
    for (int i = 0; i < rounds && got.size() < want; ++i) {
      auto r = c.Fetch(100, 100ms);
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) break;
      for (Delivery& d : r.value()) got.push_back(std::move(d));
    }
    return got;
  }

  static inline std::string dir_;
  static inline testing::BrokerProcess* server_ = nullptr;
  static inline bool started_ = false;
};

TEST(Amqp, BadUrls) {
  EXPECT_FALSE(OpenPublisher("amqp://h:99999").ok());
  EXPECT_FALSE(OpenPublisher("amqp://").ok());
  EXPECT_FALSE(OpenPublisher("amqp://h/?queue=x").ok());
  auto p = OpenPublisher("amqp://user:secret@h:5673/%2f?exchange=events");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p.value()->Describe(), "amqp://h:5673?exchange=events");  // no credentials
  auto unreachable = OpenPublisher("amqp://127.0.0.1:" + std::to_string(testing::FreePort()));
  ASSERT_TRUE(unreachable.ok());
  std::vector<Status> r = unreachable.value()->Publish(Batch("t", 2), 1s);
  ASSERT_EQ(r.size(), 2u);
  for (const Status& s : r) EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
}

TEST_F(AmqpBroker, PublishConsumeAckAndRedeliveryInOrder) {
  auto p = OpenPublisher(server_->Url());
  ASSERT_TRUE(p.ok());
  // No queue bound yet: confirmed but returned, so reported unavailable (the row stays pending).
  std::vector<Status> r = p.value()->Publish(Batch("orders", 1), 5s);
  EXPECT_EQ(r[0].code(), Code::kUnavailable) << r[0].ToString();
  EXPECT_NE(r[0].message().find("no queue is bound"), std::string::npos) << r[0].ToString();
  auto c = NewConsumer("g1", {"orders", "refunds"});
  ASSERT_TRUE(c->Fetch(1, 10ms).ok());  // declares and binds the queue
  std::vector<Message> batch = Batch("orders", 10);
  batch[7].topic = "refunds";  // two routing keys, one queue: one order
  for (const Status& s : p.value()->Publish(batch, 5s)) ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<Delivery> got = FetchAll(*c, 10);
  ASSERT_EQ(got.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(got[i].message.message_id, "m" + std::to_string(i));
    EXPECT_EQ(got[i].message.topic, i == 7 ? "refunds" : "orders");
    EXPECT_EQ(got[i].message.payload, "p" + std::to_string(i));
    EXPECT_EQ(got[i].message.key, "k" + std::to_string(i % 3));
    ASSERT_EQ(got[i].message.headers.size(), 1u);
    EXPECT_EQ(got[i].message.headers[0].first, "correlation_id");
    EXPECT_EQ(got[i].message.headers[0].second, "c" + std::to_string(i));
  }
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(c->Ack(got[i]).ok());
  // Published meanwhile; the 4 unacknowledged ones come back first, in order, to the next
  // consumer once this one's connection is gone.
  for (const Status& s : p.value()->Publish(Batch("orders", 2, 10), 5s)) ASSERT_TRUE(s.ok());
  c = NewConsumer("g1", {"orders", "refunds"});
  std::vector<Delivery> again = FetchAll(*c, 6);
  ASSERT_EQ(again.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(again[i].message.message_id, "m" + std::to_string(6 + i));
  // An ack of a delivery of the old connection cannot reach the broker.
  EXPECT_EQ(c->Ack(got[7]).code(), Code::kUnavailable);
  for (const Delivery& d : again) ASSERT_TRUE(c->Ack(d).ok());
  c = NewConsumer("g1", {"orders", "refunds"});
  auto none = c->Fetch(10, 300ms);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none.value().empty());
}

TEST_F(AmqpBroker, OneActiveConsumerPerGroupAndTakeOver) {
  auto active = NewConsumer("g2", {"payments"}, /*max_unacked=*/5);
  ASSERT_TRUE(active->Fetch(1, 10ms).ok());
  auto standby = NewConsumer("g2", {"payments"});
  ASSERT_TRUE(standby->Fetch(1, 10ms).ok());
  auto p = OpenPublisher(server_->Url());
  ASSERT_TRUE(p.ok());
  for (const Status& s : p.value()->Publish(Batch("payments", 8), 5s)) ASSERT_TRUE(s.ok());
  std::vector<Delivery> first = FetchAll(*active, 8, 10);
  ASSERT_EQ(first.size(), 5u);  // prefetch = max_unacked holds the rest back
  auto idle = standby->Fetch(10, 200ms);
  ASSERT_TRUE(idle.ok());
  EXPECT_TRUE(idle.value().empty());  // single active consumer: the standby gets nothing
  ASSERT_TRUE(active->Ack(first[0]).ok());
  active.reset();  // its connection closes: m1..m4 go back to the queue at their place
  std::vector<Delivery> taken = FetchAll(*standby, 7);
  ASSERT_EQ(taken.size(), 7u);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(taken[i].message.message_id, "m" + std::to_string(i + 1));
}

// Bad credentials (or a missing vhost) are the connection's problem, not the messages': transport
// failures, so the relay keeps the rows pending instead of parking them.
TEST_F(AmqpBroker, AccessRefusedIsATransportFailure) {
  const std::string url = server_->Url();
  auto p = OpenPublisher("amqp://guest:wrong@" + url.substr(7));
  ASSERT_TRUE(p.ok());
  std::vector<Status> r = p.value()->Publish(Batch("orders", 2), 5s);
  for (const Status& s : r) {
    EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
    EXPECT_NE(s.message().find("ACCESS_REFUSED"), std::string::npos) << s.ToString();
  }
  auto novhost = OpenPublisher(url + "/nowhere");
  ASSERT_TRUE(novhost.ok());
  EXPECT_EQ(novhost.value()->Publish(Batch("orders", 1), 5s)[0].code(), Code::kUnavailable);
}

TEST_F(AmqpBroker, RefusalsAndServerKillNineKeepsConfirmedMessages) {
  auto c = NewConsumer("g3", {"audit"});
  ASSERT_TRUE(c->Fetch(1, 10ms).ok());
  c.reset();
  auto p = OpenPublisher(server_->Url());
  ASSERT_TRUE(p.ok());
  std::vector<Message> batch = Batch("audit", 3);
  batch[1].headers.emplace_back(std::string(300, 'h'), "v");  // AMQP names are <= 255 bytes
  std::vector<Status> r = p.value()->Publish(batch, 5s);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_TRUE(r[0].ok()) << r[0].ToString();
  EXPECT_EQ(r[1].code(), Code::kInvalidArgument) << r[1].ToString();
  EXPECT_TRUE(r[2].ok()) << r[2].ToString();
  server_->Kill();
  r = p.value()->Publish(Batch("audit", 1, 50), 1s);
  EXPECT_TRUE(r[0].code() == Code::kUnavailable || r[0].code() == Code::kTimeout)
      << r[0].ToString();
  ASSERT_TRUE(server_->Start()) << server_->log_path();
  // Persistent messages in a durable queue were confirmed after the write: still there.
  c = NewConsumer("g3", {"audit"});
  std::vector<Delivery> got = FetchAll(*c, 2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].message.message_id, "m0");
  EXPECT_EQ(got[1].message.message_id, "m2");
  // The publisher reconnects by itself.
  for (const Status& s : p.value()->Publish(Batch("audit", 1, 60), 5s)) EXPECT_TRUE(s.ok());
}

}  // namespace
}  // namespace dtx::brokers
