// Tests of dtx::Inbox on a private redis-server (Redis Streams) and nats-server -js (NATS
// JetStream) with SQLite files and the test
// run's PostgreSQL (DTX_TEST_PG_URL; those tests skip without it): exactly-once effects despite
// duplicate deliveries, ack after commit, rollback of a failed handler, retries with backoff then
// the dead-letter table, transient failures never dead-lettered, retention, and a consumer process
// killed with SIGKILL again and again mid-stream.
#include "dtx/inbox.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "brokers/broker.h"
#include "brokers/broker_process.h"
#include "brokers/require_broker.h"

namespace dtx {
namespace {

using namespace std::chrono_literals;

const char* PgUrl() {
  const char* url = std::getenv("DTX_TEST_PG_URL");
  return url != nullptr && *url != '\0' ? url : nullptr;
}

std::string TestDir(const std::string& name) {
  std::string d = "/tmp/dtx-inbox-test-" + std::to_string(::getpid()) + "-" + name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

sqlite3* OpenSqlite(const std::string& path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_exec(db,
               "pragma journal_mode=wal; create table if not exists effects (seq integer primary "
               "key autoincrement, message_id text, msg_key text, n integer)",
               nullptr, nullptr, nullptr);
  return db;
}

int64_t SqliteInt(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sql;
  int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
  sqlite3_finalize(s);
  return v;
}

// The effect of a message: one row in `effects` (no unique key, so applying twice would show).
Status ApplySqlite(sqlite3* db, const InboxMessage& m) {
  const std::string sql = "insert into effects (message_id, msg_key, n) values ('" + m.message_id +
                          "', '" + m.key + "', " + m.payload + ")";
  return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK
             ? Status::Ok()
             : Status::Internal(sqlite3_errmsg(db));
}

brokers::Message Msg(int n, const std::string& key) {
  return {.topic = "events",
          .key = key,
          .message_id = "m" + std::to_string(n),
          .payload = std::to_string(n),
          .headers = {{"correlation_id", "c" + std::to_string(n)}}};
}

// Every test runs on each broker: redis (Redis Streams), nats (NATS JetStream), amqp (RabbitMQ)
// and kafka (dtx-kafka-mock; the broker-restart test skipped there: the mock keeps nothing).
class InboxTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& c : name) c = c == '/' ? '-' : c;
    dir_ = TestDir(name);
    DTX_REQUIRE_BROKER(GetParam());
    if (GetParam() == "amqp") {
      // rabbitmq-server boots in 5-15 s: one server for all amqp tests, each on its own exchange
      // (so its own queue, EXCHANGE.svc).
      struct Shared {  // killed and removed at exit
        std::string dir = "/tmp/dtx-inbox-test-" + std::to_string(::getpid()) + "-rabbitmq";
        brokers::testing::BrokerProcess server{"amqp", dir};
        ~Shared() {
          server.Kill();
          std::filesystem::remove_all(dir);
        }
      };
      static Shared shared;
      broker_ = &shared.server;
    } else {
      owned_ = std::make_unique<brokers::testing::BrokerProcess>(GetParam(), dir_ + "/broker");
      broker_ = owned_.get();
    }
    ASSERT_TRUE(broker_->Start()) << GetParam() << " did not start; log: " << broker_->log_path();
    url_ = broker_->Url();
    if (GetParam() == "amqp") url_ += "?exchange=" + name;
    // A killed member's partitions move after session.timeout.ms: 3.5 s here (the mock cluster
    // takes it; a real broker's minimum is 6 s). Not below 3 s: the mock delays a group's first
    // join by 3 s and would time the joining member out meanwhile.
    if (GetParam() == "kafka") url_ += "?session.timeout.ms=3500";
    auto p = brokers::OpenPublisher(GetParam() == "kafka" ? broker_->Url() : url_);
    ASSERT_TRUE(p.ok());
    publisher_ = std::move(p.value());
    if (GetParam() == "amqp") {  // RabbitMQ keeps a message only for a queue bound before it
      auto c =
          brokers::OpenConsumer(url_, {.group = "svc", .consumer = "setup", .topics = {"events"}});
      ASSERT_TRUE(c.ok());
      auto f = c.value()->Fetch(1, 10ms);
      ASSERT_TRUE(f.ok()) << f.status().ToString();
    }
  }
  void TearDown() override {
    owned_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Publish(const std::vector<brokers::Message>& batch) {
    for (const Status& s : publisher_->Publish(batch, 5s)) ASSERT_TRUE(s.ok()) << s.ToString();
  }
  InboxOptions Options(const std::string& instance = "") {
    return {.broker = url_,
            .consumer = "svc",
            .instance = instance,
            .topics = {"events"},
            .max_attempts = 3,
            .retry_base = 10ms,
            .retry_max = 40ms,
            .redeliver_after = 500ms};
  }
  // Polls until `want` messages are finished (bounded).
  static void Drain(Inbox& inbox, size_t want) {
    size_t done = 0;
    for (int i = 0; i < 200 && done < want; ++i) {
      Result<size_t> r = inbox.Poll(50ms);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      done += r.value();
    }
    ASSERT_EQ(done, want);
  }

  // JetStream drops a re-publish of a message id within its duplicate window by itself.
  bool BrokerDedups() const { return GetParam() == "nats"; }

  std::string dir_;
  std::unique_ptr<brokers::testing::BrokerProcess> owned_;
  brokers::testing::BrokerProcess* broker_ = nullptr;  // owned_, or amqp's shared server
  std::string url_;
  std::unique_ptr<brokers::Publisher> publisher_;
};

TEST_P(InboxTest, BadOptionsAreRefused) {
  sqlite3* db = OpenSqlite(dir_ + "/a.db");
  auto h = [](const InboxMessage&) { return Status::Ok(); };
  InboxOptions o = Options();
  o.consumer = "has space";
  EXPECT_EQ(Inbox::Open(db, o, h).status().code(), Code::kInvalidArgument);
  o = Options();
  o.broker = "pigeon://x";
  auto r = Inbox::Open(db, o, h);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("nats://"), std::string::npos) << r.status().message();
  o = Options();
  o.applied_table = "x; drop table effects";
  EXPECT_EQ(Inbox::Open(db, o, h).status().code(), Code::kInvalidArgument);
  o = Options();
  o.topics.clear();
  EXPECT_EQ(Inbox::Open(db, o, h).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Inbox::Open(db, Options(), nullptr).status().code(), Code::kInvalidArgument);
  sqlite3_close(db);
}

TEST_P(InboxTest, DuplicatesAreSkippedAndEverythingIsAcknowledged) {
  sqlite3* db = OpenSqlite(dir_ + "/a.db");
  std::vector<brokers::Message> batch;
  for (int i = 0; i < 30; ++i) batch.push_back(Msg(i, "k" + std::to_string(i % 4)));
  for (int i = 0; i < 30; i += 3) batch.push_back(Msg(i, "k" + std::to_string(i % 4)));  // again
  Publish(batch);
  std::string seen_correlation;
  auto inbox = Inbox::Open(db, Options(), [&](const InboxMessage& m) {
    if (m.message_id == "m7") seen_correlation = m.Header("correlation_id");
    return ApplySqlite(db, m);
  });
  ASSERT_TRUE(inbox.ok()) << inbox.status().ToString();
  ASSERT_TRUE(inbox.value()->EnsureTables().ok());
  Drain(*inbox.value(), BrokerDedups() ? 30 : 40);
  EXPECT_EQ(inbox.value()->counters().applied, 30);
  EXPECT_EQ(inbox.value()->counters().duplicates, BrokerDedups() ? 0 : 10);
  EXPECT_EQ(seen_correlation, "c7");
  EXPECT_EQ(SqliteInt(db, "select count(*) from effects"), 30);
  EXPECT_EQ(SqliteInt(db, "select count(distinct message_id) from effects"), 30);
  EXPECT_EQ(SqliteInt(db, "select count(*) from message_applied where consumer = 'svc'"), 30);
  // Everything was acknowledged: the same instance restarted has nothing to re-read.
  inbox.value().reset();
  auto again =
      Inbox::Open(db, Options(), [&](const InboxMessage& m) { return ApplySqlite(db, m); });
  ASSERT_TRUE(again.ok());
  Result<size_t> r = again.value()->Poll(100ms);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), 0u);
  // Retention keeps recent rows and deletes old ones.
  EXPECT_EQ(again.value()->DeleteAppliedOlderThan(3600s).value(), 0);
  std::this_thread::sleep_for(5ms);  // applied_at < now
  EXPECT_EQ(again.value()->DeleteAppliedOlderThan(0s).value(), 30);
  sqlite3_close(db);
}

TEST_P(InboxTest, FailingHandlerRollsBackRetriesThenDeadLettersAndOthersGoOn) {
  sqlite3* db = OpenSqlite(dir_ + "/a.db");
  Publish({Msg(1, "k"), Msg(2, "k"), Msg(3, "k"), Msg(4, "k")});
  std::map<std::string, int> tries;
  bool heal = false;
  auto inbox = Inbox::Open(db, Options(), [&](const InboxMessage& m) -> Status {
    ++tries[m.message_id];
    if (Status s = ApplySqlite(db, m); !s.ok()) return s;  // written, then rolled back below
    if (m.message_id == "m2" && !heal) return Status::InvalidArgument("bad order " + m.payload);
    if (m.message_id == "m3" && tries[m.message_id] <= 5) return Status::Unavailable("db busy");
    return Status::Ok();
  });
  ASSERT_TRUE(inbox.ok());
  ASSERT_TRUE(inbox.value()->EnsureTables().ok());
  Drain(*inbox.value(), 4);
  EXPECT_EQ(tries["m2"], 3);  // max_attempts
  EXPECT_EQ(tries["m3"], 6);  // transient: retried past max_attempts, never dead-lettered
  EXPECT_EQ(inbox.value()->counters().dead_lettered, 1);
  EXPECT_EQ(inbox.value()->counters().applied, 3);
  // Effects in order, m2's rolled back every time.
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "select group_concat(n, ',') from (select n from effects order by seq)",
                     -1, &s, nullptr);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), "1,3,4");
  sqlite3_finalize(s);
  auto dead = inbox.value()->DeadLetters();
  ASSERT_TRUE(dead.ok());
  ASSERT_EQ(dead.value().size(), 1u);
  EXPECT_EQ(dead.value()[0].message.message_id, "m2");
  EXPECT_EQ(dead.value()[0].message.payload, "2");
  EXPECT_EQ(dead.value()[0].message.Header("correlation_id"), "c2");
  EXPECT_EQ(dead.value()[0].attempts, 3);
  EXPECT_EQ(dead.value()[0].last_error, "bad order 2");
  // A redelivery of a dead-lettered message is a duplicate; retention keeps its applied row.
  if (!BrokerDedups()) {
    Publish({Msg(2, "k")});
    Drain(*inbox.value(), 1);
    EXPECT_EQ(inbox.value()->counters().duplicates, 1);
  }
  std::this_thread::sleep_for(5ms);  // applied_at < now
  EXPECT_EQ(inbox.value()->DeleteAppliedOlderThan(0s).value(), 3);
  // Still failing: stays, attempts + 1. Healed: applied and gone.
  EXPECT_EQ(inbox.value()->RetryDeadLetters().value(), 0);
  EXPECT_EQ(inbox.value()->DeadLetters().value()[0].attempts, 4);
  heal = true;
  EXPECT_EQ(inbox.value()->RetryDeadLetters().value(), 1);
  EXPECT_TRUE(inbox.value()->DeadLetters().value().empty());
  EXPECT_EQ(SqliteInt(db, "select count(*) from effects where message_id = 'm2'"), 1);
  sqlite3_close(db);
}

TEST_P(InboxTest, BrokerDownIsRetryableAndNothingIsLost) {
  if (GetParam() == "kafka") GTEST_SKIP() << "the Kafka mock cluster keeps nothing over a restart";
  sqlite3* db = OpenSqlite(dir_ + "/a.db");
  Publish({Msg(1, "k"), Msg(2, "k")});
  auto inbox =
      Inbox::Open(db, Options(), [&](const InboxMessage& m) { return ApplySqlite(db, m); });
  ASSERT_TRUE(inbox.ok());
  ASSERT_TRUE(inbox.value()->EnsureTables().ok());
  Drain(*inbox.value(), 2);
  broker_->Kill();
  Result<size_t> r = inbox.value()->Poll(50ms);
  for (int i = 0; i < 40 && r.ok(); ++i) r = inbox.value()->Poll(50ms);  // noticed within 2 s
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().retryable()) << r.status().ToString();
  ASSERT_TRUE(broker_->Start());
  (void)publisher_->Publish({Msg(3, "k")}, 1s);  // the publisher's old connection fails first
  // A restarted RabbitMQ recovers its durable queues and bindings asynchronously: until then a
  // publish is refused as unroutable (retryable, as the relay treats it). Retry for up to 10 s.
  Status published = Status::Unavailable("not published");
  for (int i = 0; i < 100 && !published.ok(); ++i) {
    published = publisher_->Publish({Msg(3, "k")}, 1s).front();
    if (!published.ok()) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(published.ok()) << published.ToString();
  // m3 (published twice: at least once), and on NATS m1/m2 again when the server lost their
  // acks with the kill: applied once each all the same.
  for (int i = 0; i < 100 && SqliteInt(db, "select count(*) from effects") < 3; ++i) {
    ASSERT_TRUE(inbox.value()->Poll(50ms).ok());
  }
  (void)inbox.value()->Poll(600ms);
  EXPECT_EQ(SqliteInt(db, "select count(*) from effects"), 3);
  sqlite3_close(db);
}

TEST_P(InboxTest, PostgresExactlyOnceRollbackAndDeadLetter) {
  if (PgUrl() == nullptr) GTEST_SKIP() << "DTX_TEST_PG_URL is not set";
  PGconn* conn = PQconnectdb(PgUrl());
  ASSERT_EQ(PQstatus(conn), CONNECTION_OK);
  const std::string schema = "inbox_test_" + GetParam() + std::to_string(::getpid());
  auto exec = [&](const std::string& sql) {
    PGresult* r = PQexec(conn, sql.c_str());
    ExecStatusType st = PQresultStatus(r);
    std::string v = st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
    EXPECT_TRUE(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) << sql << PQresultErrorMessage(r);
    PQclear(r);
    return v;
  };
  exec("create schema " + schema + "; create table " + schema +
       ".effects (seq bigserial, message_id text, n int)");
  Publish({Msg(1, "k"), Msg(2, "k"), Msg(1, "k"), Msg(3, "k")});
  InboxOptions o = Options();
  o.applied_table = schema + ".message_applied";
  o.dead_letter_table = schema + ".dead";
  auto inbox = Inbox::Open(conn, o, [&](const InboxMessage& m) -> Status {
    const std::string sql = "insert into " + schema + ".effects (message_id, n) values ('" +
                            m.message_id + "', " + m.payload + ")";
    PGresult* r = PQexec(conn, sql.c_str());
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) return Status::Internal("insert failed");
    return m.message_id == "m2" ? Status::InvalidArgument("no") : Status::Ok();
  });
  ASSERT_TRUE(inbox.ok()) << inbox.status().ToString();
  ASSERT_TRUE(inbox.value()->EnsureTables().ok());
  ASSERT_TRUE(inbox.value()->EnsureTables().ok());  // idempotent
  Drain(*inbox.value(), BrokerDedups() ? 3 : 4);
  EXPECT_EQ(exec("select string_agg(n::text, ',' order by seq) from " + schema + ".effects"),
            "1,3");
  EXPECT_EQ(exec("select count(*) from " + schema + ".message_applied"), "3");
  EXPECT_EQ(exec("select attempts || ' ' || last_error from " + schema + ".dead"), "3 no");
  EXPECT_EQ(inbox.value()->counters().duplicates, BrokerDedups() ? 0 : 1);
  EXPECT_EQ(PQtransactionStatus(conn), PQTRANS_IDLE);
  inbox.value().reset();
  exec("drop schema " + schema + " cascade");
  PQfinish(conn);
}

// A consumer process: applies everything it gets until killed.
[[noreturn]] void ConsumerChild(const std::string& db_path, const InboxOptions& o) {
  sqlite3* db = OpenSqlite(db_path);
  auto inbox = Inbox::Open(db, o, [&](const InboxMessage& m) { return ApplySqlite(db, m); });
  if (!inbox.ok() || !inbox.value()->EnsureTables().ok()) ::_exit(3);
  std::atomic<bool> stop{false};
  inbox.value()->Run(stop);
  ::_exit(0);
}

TEST_P(InboxTest, ConsumerKilledNineMidStreamAppliesEveryEventExactlyOnceInKeyOrder) {
  const std::string db_path = dir_ + "/consumer.db";
  InboxOptions o = Options("instance-1");
  o.batch = 50;
  constexpr int kEvents = 3000, kKeys = 20;
  std::atomic<bool> produced{false};
  std::thread producer([&] {  // events (and duplicates of earlier ones) while the consumer dies
    std::mt19937 gen(7);
    for (int from = 0; from < kEvents; from += 100) {
      std::vector<brokers::Message> batch;
      for (int i = from; i < from + 100; ++i) {
        batch.push_back(Msg(i, "k" + std::to_string(i % kKeys)));
        if (gen() % 10 == 0) batch.push_back(Msg(i, "k" + std::to_string(i % kKeys)));
      }
      Publish(batch);
      std::this_thread::sleep_for(40ms);
    }
    produced = true;
  });
  // The parent opens the file only between children (no SQLite connection crosses a fork).
  auto distinct_now = [&] {
    sqlite3* db = OpenSqlite(db_path);
    int64_t n = SqliteInt(db, "select count(distinct message_id) from effects");
    sqlite3_close(db);
    return n;
  };
  std::mt19937 gen(42);
  int kills = 0;
  for (auto deadline = std::chrono::steady_clock::now() + 60s;
       std::chrono::steady_clock::now() < deadline;) {
    const bool last = produced.load() && kills >= 5 && distinct_now() >= kEvents;
    pid_t pid = ::fork();
    if (pid == 0) ConsumerChild(db_path, o);
    // NATS: a consumer that starts with unacknowledged deliveries waits redeliver_after (500 ms)
    // before fetching (order), so it lives longer than that between kills. Kafka: a restarted
    // member gets its partitions after the dead one's session (3.5 s) ended and the group
    // rebalanced, so it lives 4 s.
    const int base_ms = GetParam() == "nats" ? 600 : GetParam() == "kafka" ? 4000 : 100;
    std::this_thread::sleep_for(last ? 1500ms : std::chrono::milliseconds(base_ms + gen() % 300));
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ++kills;
    if (last) break;
  }
  producer.join();
  sqlite3* db = OpenSqlite(db_path);
  const int64_t distinct = SqliteInt(db, "select count(distinct message_id) from effects");
  const int64_t total = SqliteInt(db, "select count(*) from effects");
  std::printf("%d kills, %lld effects, %lld distinct\n", kills, static_cast<long long>(total),
              static_cast<long long>(distinct));
  EXPECT_GE(kills, 5);
  EXPECT_EQ(distinct, kEvents);
  EXPECT_EQ(total, kEvents);  // exactly once
  EXPECT_EQ(SqliteInt(db, "select count(*) from message_applied"), kEvents);
  // Per-key order: within a key, n grows with the order of application.
  EXPECT_EQ(SqliteInt(db,
                      "select count(*) from effects a join effects b on a.msg_key = b.msg_key "
                      "and a.seq < b.seq and a.n > b.n"),
            0);
  sqlite3_close(db);
}

INSTANTIATE_TEST_SUITE_P(Brokers, InboxTest, ::testing::Values("redis", "nats", "amqp", "kafka"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace dtx
