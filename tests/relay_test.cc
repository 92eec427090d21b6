// End-to-end tests of `dtx relay` with real processes: a private redis-server, the test run's
// PostgreSQL (DTX_TEST_PG_URL; the PostgreSQL tests skip without it) or a SQLite file, and the real
// dtx binary, killed with SIGKILL in the chaos test. What is checked is what the issue promises:
// every committed row published (at least once), no rolled-back row ever published, per-key order
// of first deliveries, parking after N refusals, requeue, clear errors for bad input.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "brokers/broker.h"
#include "brokers/broker_process.h"
#include "brokers/require_broker.h"
#include "tests/support/relay_checks.h"
#include "tests/support/relay_process.h"

namespace dtx {
namespace {

using namespace std::chrono_literals;

const char* PgUrl() {
  const char* url = std::getenv("DTX_TEST_PG_URL");
  return url != nullptr && *url != '\0' ? url : nullptr;
}

std::string TestDir(const std::string& name) {
  std::string d = "/tmp/dtx-relay-test-" + std::to_string(::getpid()) + "-" + name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

class PgDb {
 public:
  PgDb() : conn_(PQconnectdb(PgUrl())) {}
  ~PgDb() { PQfinish(conn_); }
  std::string Query(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    EXPECT_TRUE(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK)
        << sql << ": " << PQresultErrorMessage(r);
    std::string v =
        PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
    PQclear(r);
    return v;
  }

 private:
  PGconn* conn_;
};

std::string FileText(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class RelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TestDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    redis_ = std::make_unique<brokers::testing::BrokerProcess>("redis", dir_ + "/redis");
    ASSERT_TRUE(redis_->Start());
    schema_ = "relay_test_" + std::to_string(::getpid());
    table_ = schema_ + ".outbox";
  }
  void TearDown() override {
    if (PgUrl() != nullptr) PgDb().Query("drop schema if exists " + schema_ + " cascade");
    redis_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string Args(const std::string& extra = "") {
    return "--source " + std::string(PgUrl()) + " --table " + table_ + " --sink " + Sink() + " " +
           extra;
  }
  std::vector<std::string> ArgVector(std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {"--source", PgUrl(), "--table", table_, "--sink", Sink()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  // Waits (bounded) until no row is pending.
  bool Drained(PgDb& db, std::chrono::seconds limit = 60s) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      if (db.Query("select count(*) from " + table_ + " where state = 0") == "0") return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  std::string Sink() const { return broker_ != nullptr ? broker_->Url() : redis_->Url(); }
  // The chaos run of ChaosKillNine... on `broker` (Sink()): `tx` transactions of 10 rows.
  void Chaos(brokers::testing::BrokerProcess& broker, int tx);

  std::string dir_, schema_, table_;
  std::unique_ptr<brokers::testing::BrokerProcess> redis_;
  brokers::testing::BrokerProcess* broker_ = nullptr;  // the sink when not redis_
};

TEST_F(RelayTest, BadInputGivesClearErrors) {
  if (PgUrl() == nullptr) GTEST_SKIP() << "DTX_TEST_PG_URL is not set";
  auto [rc, out] = RunDtx(Args());
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("does not exist; create it with `dtx relay --init`"), std::string::npos)
      << out;
  std::tie(rc, out) = RunDtx("--source " + std::string(PgUrl()) + " --sink amqq://h:1");
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("unknown sink scheme"), std::string::npos) << out;
  std::tie(rc, out) = RunDtx("--source mysql://x --sink " + redis_->Url());
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("--source must be"), std::string::npos) << out;
  std::tie(rc, out) = RunDtx(Args("--batch 0"));
  EXPECT_EQ(rc, 2);
}

TEST_F(RelayTest, PublishesCommittedRowsInKeyOrderNeverRolledBackOnes) {
  if (PgUrl() == nullptr) GTEST_SKIP() << "DTX_TEST_PG_URL is not set";
  RelayProcess relay(ArgVector({"--init", "--poll-interval", "5"}), dir_ + "/relay.log");
  relay.Start();
  PgDb db;
  for (int i = 0; i < 100 && db.Query("select to_regclass('" + table_ + "') is not null") != "t";
       ++i) {
    std::this_thread::sleep_for(50ms);
  }
  db.Query("begin");
  db.Query("insert into " + table_ +
           " (topic, msg_key, payload) values ('orders', 'rolled', 'rolled:1')");
  db.Query("rollback");
  for (int tx = 0; tx < 20; ++tx) {
    db.Query("insert into " + table_ +
             " (topic, msg_key, payload) select 'orders', 'k' || (g % 4), 'k' || (g % 4) || ':' || "
             "(" +
             std::to_string(tx * 10) + " + g) from generate_series(1, 10) g");
  }
  // NOTIFY wakes the relay long before the 5 s poll interval.
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(Drained(db, 4s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
  std::vector<brokers::Message> got = ReadStream(redis_->Url(), "orders");
  EXPECT_EQ(got.size(), 200u);
  for (const auto& m : got) EXPECT_NE(m.key, "rolled");
  ExpectPerKeyOrder(got);
  EXPECT_EQ(relay.Terminate(), 0);
  // Without --workers a PostgreSQL outbox gets two workers (docs/outbox.md).
  EXPECT_NE(FileText(dir_ + "/relay.log").find(", 2 worker(s)"), std::string::npos);
}

// Writers notify only a relay that waits (holds the wake-up lock); a writer in flight when the
// relay goes idle keeps it from arming, so it looks again within ~100 ms rather than after its
// 30 s poll interval; once armed, the next commit wakes it.
TEST_F(RelayTest, WakesForAWriterInFlightAndAfterArming) {
  if (PgUrl() == nullptr) GTEST_SKIP() << "DTX_TEST_PG_URL is not set";
  RelayProcess init(ArgVector({"--init"}), dir_ + "/init.log");  // creates the table
  init.Start();
  ASSERT_EQ(init.Terminate(), 0);
  PgDb writer, db;
  writer.Query("begin");
  writer.Query("insert into " + table_ +
               " (topic, msg_key, payload) values ('orders', 'a', 'a:1')");
  RelayProcess relay(ArgVector({"--poll-interval", "30"}), dir_ + "/relay.log");
  relay.Start();
  std::this_thread::sleep_for(1s);  // the relay is up, idle, and cannot arm
  writer.Query("commit");
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(Drained(db, 5s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  std::this_thread::sleep_for(500ms);  // idle again: armed now
  db.Query("insert into " + table_ + " (topic, msg_key, payload) values ('orders', 'a', 'a:2')");
  t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(Drained(db, 5s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  std::vector<brokers::Message> got = ReadStream(redis_->Url(), "orders");
  ASSERT_EQ(got.size(), 2u);
  ExpectPerKeyOrder(got);
  EXPECT_EQ(relay.Terminate(), 0);
}

// A claim walks the pending index in id order and stops at its batch, also when the statistics
// say the table is empty (a new outbox before autoanalyze): it takes the key locks of its own rows
// only. With a bitmap scan plus sort (what the planner chose then) each claim tried the lock of
// every pending row's key: 1,000 here.
TEST_F(RelayTest, ClaimLocksOnlyItsBatchsKeysWithStaleStatistics) {
  if (PgUrl() == nullptr) GTEST_SKIP() << "DTX_TEST_PG_URL is not set";
  RelayProcess init(ArgVector({"--init"}), dir_ + "/init.log");  // creates the table
  init.Start();
  ASSERT_EQ(init.Terminate(), 0);
  PgDb db;
  db.Query("analyze " + table_);  // empty
  db.Query("insert into " + table_ + " (topic, msg_key, payload) select 'orders', 'k' || (g % " +
           "1000), 'k' || (g % 1000) || ':' || g from generate_series(1, 5000) g");
  uint32_t ns = 2166136261u;  // the relay's lock namespace: FNV-1a of the table name
  for (char c : table_) ns = (ns ^ static_cast<uint8_t>(c)) * 16777619u;
  // One worker: the bound below is one claim's (two workers hold up to two claims' locks).
  RelayProcess relay(ArgVector({"--batch", "10", "--workers", "1", "--poll-interval", "0.05"}),
                     dir_ + "/relay.log");
  relay.Start();
  int most = 0;
  const std::string held = "select count(*) from pg_locks where locktype = 'advisory' and " +
                           std::string("objsubid = 2 and classid::bigint = ") + std::to_string(ns);
  auto until = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < until &&
         db.Query("select count(*) from " + table_ + " where state = 0") != "0") {
    most = std::max(most, std::stoi(db.Query(held)));
  }
  EXPECT_EQ(db.Query("select count(*) from " + table_ + " where state = 0"), "0");
  EXPECT_GT(most, 0);  // the sampling saw claims
  EXPECT_LE(most, 10);
  EXPECT_EQ(relay.Terminate(), 0);
}

// --delete-published: an acknowledged row is deleted at its mark; refused and malformed rows stay,
// parked; --retain cannot go with it.
TEST_F(RelayTest, DeletePublishedKeepsOnlyParkedRows) {
  if (PgUrl() == nullptr) GTEST_SKIP() << "DTX_TEST_PG_URL is not set";
  auto [rc, out] = RunDtx(Args("--delete-published --retain 60 --init"));
  EXPECT_EQ(rc, 2);
  EXPECT_NE(out.find("drop --retain"), std::string::npos) << out;
  RelayProcess relay(ArgVector({"--init", "--delete-published", "--poll-interval", "0.05"}),
                     dir_ + "/relay.log");
  relay.Start();
  PgDb db;
  for (int i = 0; i < 100 && db.Query("select to_regclass('" + table_ + "') is not null") != "t";
       ++i) {
    std::this_thread::sleep_for(50ms);
  }
  db.Query("insert into " + table_ +
           " (topic, msg_key, payload) select 'orders', 'k' || (g % 3), " +
           "'k' || (g % 3) || ':' || g from generate_series(1, 30) g");
  db.Query("insert into " + table_ + " (topic, msg_key, payload) values ('bad topic', 'c', 'c:1')");
  ASSERT_TRUE(Drained(db, 20s));
  EXPECT_EQ(db.Query("select count(*) || ' ' || min(state) || ' ' || min(topic) from " + table_),
            "1 2 bad topic");
  std::vector<brokers::Message> got = ReadStream(redis_->Url(), "orders");
  EXPECT_EQ(got.size(), 30u);
  ExpectPerKeyOrder(got);
  EXPECT_EQ(relay.Terminate(), 0);
  std::tie(rc, out) = RunDtx("status --source " + std::string(PgUrl()) + " --table " + table_);
  EXPECT_EQ(out, "pending 0 published 0 parked 1\n");
}

TEST_F(RelayTest, RefusedRowsAreParkedWithoutBlockingOthersAndRequeued) {
  if (PgUrl() == nullptr) GTEST_SKIP() << "DTX_TEST_PG_URL is not set";
  auto [rc, out] = RunDtx("status --source " + std::string(PgUrl()) + " --table " + table_);
  ASSERT_EQ(rc, 2) << out;  // no table yet
  // WRONGTYPE for the topic "plain": Redis refuses every XADD to it.
  ASSERT_EQ(
      std::system(
          ("redis-cli -p " + std::to_string(redis_->port()) + " set plain x >/dev/null").c_str()),
      0);
  RelayProcess relay(ArgVector({"--init", "--max-attempts", "3", "--poll-interval", "0.05"}),
                     dir_ + "/relay.log");
  relay.Start();
  PgDb db;
  for (int i = 0; i < 100 && db.Query("select to_regclass('" + table_ + "') is not null") != "t";
       ++i) {
    std::this_thread::sleep_for(50ms);
  }
  db.Query("insert into " + table_ + " (topic, msg_key, payload) values ('plain', 'a', 'a:1'), " +
           "('orders', 'b', 'b:1'), ('bad topic', 'c', 'c:1'), ('orders', 'd', 'd:1')");
  ASSERT_TRUE(Drained(db, 20s));
  EXPECT_EQ(db.Query("select count(*) from " + table_ + " where state = 2"), "2");
  EXPECT_EQ(db.Query("select attempts from " + table_ + " where topic = 'plain'"), "3");
  EXPECT_NE(
      db.Query("select last_error from " + table_ + " where topic = 'plain'").find("WRONGTYPE"),
      std::string::npos);
  EXPECT_NE(db.Query("select last_error from " + table_ + " where topic = 'bad topic'")
                .find("printable ASCII"),
            std::string::npos);
  EXPECT_EQ(ReadStream(redis_->Url(), "orders").size(), 2u);
  std::tie(rc, out) = RunDtx("status --source " + std::string(PgUrl()) + " --table " + table_);
  EXPECT_EQ(out, "pending 0 published 2 parked 2\n");
  // The operator fixes the cause and re-queues: the row goes out.
  ASSERT_EQ(
      std::system(
          ("redis-cli -p " + std::to_string(redis_->port()) + " del plain >/dev/null").c_str()),
      0);
  std::string id = db.Query("select id from " + table_ + " where topic = 'plain'");
  std::tie(rc, out) =
      RunDtx("requeue --source " + std::string(PgUrl()) + " --table " + table_ + " --id " + id);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out, "requeued 1 parked row(s)\n");
  ASSERT_TRUE(Drained(db, 20s));
  EXPECT_EQ(db.Query("select state from " + table_ + " where topic = 'plain'"), "1");
  EXPECT_EQ(ReadStream(redis_->Url(), "plain").size(), 1u);
}

TEST_F(RelayTest, UnreachableBrokerKeepsRowsPendingUntilItIsBack) {
  if (PgUrl() == nullptr) GTEST_SKIP() << "DTX_TEST_PG_URL is not set";
  redis_->Kill();
  RelayProcess relay(ArgVector({"--init", "--poll-interval", "0.05"}), dir_ + "/relay.log");
  relay.Start();
  PgDb db;
  for (int i = 0; i < 100 && db.Query("select to_regclass('" + table_ + "') is not null") != "t";
       ++i) {
    std::this_thread::sleep_for(50ms);
  }
  db.Query("insert into " + table_ + " (topic, msg_key, payload) values ('orders', 'k', 'k:1')");
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(db.Query("select state || '/' || attempts from " + table_), "0/0");
  ASSERT_TRUE(redis_->Start());
  ASSERT_TRUE(Drained(db, 20s));
  EXPECT_EQ(ReadStream(redis_->Url(), "orders").size(), 1u);
}

// Chaos: a writer commits (and rolls back) rows over many keys while two relays run on one outbox
// and are SIGKILLed again and again; redis-server is killed -9 once too.
void RelayTest::Chaos(brokers::testing::BrokerProcess& broker, int tx_count) {
  ASSERT_EQ(RunDtx(Args("--init --batch 0")).first, 2);  // options checked before init
  PgDb setup;
  setup.Query("create schema if not exists " + schema_);
  ASSERT_EQ(RunDtx("status --source " + std::string(PgUrl()) + " --table " + table_).first, 2);
  const bool amqp = broker.Url().starts_with("amqp://");
  const bool kafka = broker.Url().starts_with("kafka://");
  if (amqp) {  // the checking queue, bound before anything is published
    auto c = brokers::OpenConsumer(broker.Url(),
                                   {.group = "check", .consumer = "c", .topics = {"orders"}});
    ASSERT_TRUE(c.ok() && c.value()->Fetch(1, 10ms).ok());
  }
  std::vector<std::unique_ptr<RelayProcess>> relays;
  for (int i = 0; i < 2; ++i) {
    relays.push_back(std::make_unique<RelayProcess>(
        // Kafka: a publish timeout below the outage below, so that batches time out (the
        // producer is purged and the rows published again) instead of riding it out.
        ArgVector({"--init", "--batch", "50", "--workers", "2", "--poll-interval", "0.1",
                   "--publish-timeout", kafka ? "1" : "10"}),
        dir_ + "/relay" + std::to_string(i) + ".log"));
    relays.back()->Start();
  }
  for (int i = 0; i < 100 && setup.Query("select to_regclass('" + table_ + "') is not null") != "t";
       ++i) {
    std::this_thread::sleep_for(50ms);
  }
  constexpr int kKeys = 40, kRowsPerTx = 10;
  const int kTx = tx_count;
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    PgDb db;
    std::map<int, int> seq;
    std::mt19937 rng(7);
    for (int tx = 0; tx < kTx; ++tx) {
      db.Query("begin");
      std::string values;
      for (int r = 0; r < kRowsPerTx; ++r) {
        int key = static_cast<int>(rng() % kKeys);
        values += std::string(values.empty() ? "" : ",") + "('orders','k" + std::to_string(key) +
                  "','k" + std::to_string(key) + ":" + std::to_string(++seq[key]) + "')";
      }
      db.Query("insert into " + table_ + " (topic, msg_key, payload) values " + values);
      if (tx % 10 == 9) {
        db.Query("insert into " + table_ +
                 " (topic, msg_key, payload) values ('orders', "
                 "'rolled', 'rolled:1')");
        db.Query("rollback");  // its sequence numbers stay used: only increase matters
      } else {
        db.Query("commit");
      }
      std::this_thread::sleep_for(2ms);
    }
    writing = false;
  });
  std::mt19937 rng(11);
  for (int round = 0; writing.load(); ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 200));
    RelayProcess& victim = *relays[rng() % relays.size()];
    victim.Kill();
    if (round == 3 && kafka) {  // the mock would lose its data on a restart: an outage instead
      ASSERT_TRUE(broker.SetDown(true));
      std::this_thread::sleep_for(2500ms);
      ASSERT_TRUE(broker.SetDown(false));
    } else if (round == 3) {
      broker.Kill();
      std::this_thread::sleep_for(200ms);
      ASSERT_TRUE(broker.Start());
    }
    victim.Start();
  }
  writer.join();
  PgDb db;
  ASSERT_TRUE(Drained(db, 60s));
  for (auto& r : relays) EXPECT_EQ(r->Terminate(), 0);
  const int committed = kTx / 10 * 9 * kRowsPerTx;
  EXPECT_EQ(db.Query("select count(*) from " + table_ + " where state = 1"),
            std::to_string(committed));
  std::vector<brokers::Message> got =
      ReadStream(broker.Url(), "orders", amqp ? "check" : "", kafka ? 15s : 0ms);
  std::set<std::string> ids;
  for (const auto& m : got) {
    EXPECT_NE(m.key, "rolled");
    ids.insert(m.message_id);
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(committed));
  ExpectPerKeyOrder(got);
  if (broker.Url().starts_with("nats://")) {
    EXPECT_EQ(got.size(), ids.size());  // JetStream dropped every re-publish
  }
  std::printf("chaos on %s: %d committed rows, %zu deliveries (%zu duplicates)\n",
              broker.Url().c_str(), committed, got.size(), got.size() - ids.size());
}

TEST_F(RelayTest, ChaosKillNineLosesNothingAndKeepsKeyOrder) {
  if (PgUrl() == nullptr) GTEST_SKIP() << "DTX_TEST_PG_URL is not set";
  Chaos(*redis_, 600);
}

// The same on NATS JetStream (nats-server -js killed -9 once); there every row is in the stream
// exactly once (JetStream drops re-publishes of a message id within its duplicate window).
TEST_F(RelayTest, ChaosOnNatsJetStream) {
  if (PgUrl() == nullptr) GTEST_SKIP() << "DTX_TEST_PG_URL is not set";
  brokers::testing::BrokerProcess nats("nats", dir_ + "/nats");
  ASSERT_TRUE(nats.Start()) << "nats-server did not start; log: " << nats.log_path();
  broker_ = &nats;
  Chaos(nats, 300);
  broker_ = nullptr;
}

// The same on RabbitMQ (rabbitmq-server killed -9 once): persistent messages, publisher confirms.
TEST_F(RelayTest, ChaosOnRabbitMq) {
  if (PgUrl() == nullptr) GTEST_SKIP() << "DTX_TEST_PG_URL is not set";
  DTX_REQUIRE_BROKER("amqp");
  brokers::testing::BrokerProcess rabbit("amqp", dir_ + "/rabbitmq");
  ASSERT_TRUE(rabbit.Start()) << "rabbitmq-server did not start; log: " << rabbit.log_path();
  broker_ = &rabbit;
  Chaos(rabbit, 300);
  broker_ = nullptr;
}

// The same on Kafka (dtx-kafka-mock, idempotent producer): relays killed -9, the cluster's brokers
// down for 2.5 s mid-run (an outage: the mock keeps nothing over a restart) while the relays
// publish with a 1 s timeout.
TEST_F(RelayTest, ChaosOnKafka) {
  if (PgUrl() == nullptr) GTEST_SKIP() << "DTX_TEST_PG_URL is not set";
  brokers::testing::BrokerProcess kafka("kafka", dir_ + "/kafka");
  ASSERT_TRUE(kafka.Start()) << "dtx-kafka-mock did not start; log: " << kafka.log_path();
  broker_ = &kafka;
  Chaos(kafka, 300);
  broker_ = nullptr;
}

TEST_F(RelayTest, SqliteOutboxOneRelayPerFile) {
  const std::string db_path = dir_ + "/app.db";
  std::string src = "sqlite:" + db_path;
  RelayProcess relay(
      {"--source", src, "--sink", redis_->Url(), "--init", "--poll-interval", "0.05"},
      dir_ + "/relay.log");
  relay.Start();
  std::this_thread::sleep_for(500ms);
  auto [rc, out] = RunDtx("--source " + src + " --sink " + redis_->Url());
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("another dtx relay runs on"), std::string::npos) << out;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  ASSERT_EQ(sqlite3_exec(db,
                         "insert into dtx_outbox (topic, msg_key, payload) values ('orders', 'k', "
                         "'k:1'), ('orders', 'k', 'k:2')",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  std::vector<brokers::Message> got;
  for (int i = 0; i < 100 && got.size() < 2; ++i) {
    std::this_thread::sleep_for(50ms);
    got = ReadStream(redis_->Url(), "orders");
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].payload, "k:1");
  sqlite3_close(db);
  EXPECT_EQ(relay.Terminate(), 0);
  EXPECT_NE(FileText(dir_ + "/relay.log").find(", 1 worker(s)"), std::string::npos);
  std::tie(rc, out) = RunDtx("status --source " + src);
  EXPECT_EQ(out, "pending 0 published 2 parked 0\n");
  // --delete-published on SQLite: the next rows are deleted once acknowledged.
  RelayProcess deleting(
      {"--source", src, "--sink", redis_->Url(), "--delete-published", "--poll-interval", "0.05"},
      dir_ + "/relay2.log");
  deleting.Start();
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  ASSERT_EQ(sqlite3_exec(db,
                         "insert into dtx_outbox (topic, msg_key, payload) values ('orders', "
                         "'k', 'k:3')",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  for (int i = 0; i < 100 && got.size() < 3; ++i) {
    std::this_thread::sleep_for(50ms);
    got = ReadStream(redis_->Url(), "orders");
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(deleting.Terminate(), 0);
  std::tie(rc, out) = RunDtx("status --source " + src);
  EXPECT_EQ(out, "pending 0 published 2 parked 0\n");
}

}  // namespace
}  // namespace dtx
