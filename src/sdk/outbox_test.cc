// Tests of dtx::Outbox: validation, the schema on SQLite and PostgreSQL, rows that commit and roll
// back with the caller's transaction, rows written with plain SQL (other languages), and the
// NOTIFY of the insert trigger. PostgreSQL tests run when DTX_TEST_PG_URL is set, each in a fresh
// schema dropped at the end.
#include "dtx/outbox.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <poll.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace dtx {
namespace {

const char* PgUrl() {
  const char* url = std::getenv("DTX_TEST_PG_URL");
  return url != nullptr && *url != '\0' ? url : nullptr;
}

TEST(OutboxValidate, LimitsAndCharacters) {
  OutboxMessage ok{.topic = "orders", .key = "o1", .payload = "{}"};
  EXPECT_TRUE(ValidateOutboxMessage(ok).ok());
  OutboxMessage m = ok;
  m.topic = "";
  EXPECT_EQ(ValidateOutboxMessage(m).code(), Code::kInvalidArgument);
  m.topic = "has space";
  EXPECT_EQ(ValidateOutboxMessage(m).code(), Code::kInvalidArgument);
  m.topic = std::string(kOutboxTopicMaxBytes + 1, 't');
  EXPECT_EQ(ValidateOutboxMessage(m).code(), Code::kInvalidArgument);
  m = ok;
  m.payload = std::string(kOutboxPayloadMaxBytes + 1, 'p');
  EXPECT_EQ(ValidateOutboxMessage(m).code(), Code::kInvalidArgument);
  m = ok;
  m.headers = {{"bad name", "v"}};
  EXPECT_EQ(ValidateOutboxMessage(m).code(), Code::kInvalidArgument);
  m.headers = {{"correlation_id", std::string("a\0b", 3)}};
  EXPECT_EQ(ValidateOutboxMessage(m).code(), Code::kInvalidArgument);
  m = ok;
  m.key = std::string(kOutboxKeyMaxBytes + 1, 'k');
  EXPECT_EQ(ValidateOutboxMessage(m).code(), Code::kInvalidArgument);
}

TEST(OutboxHeaders, RoundTripAndBadJson) {
  auto h = DecodeOutboxHeaders(EncodeOutboxHeaders({{"correlation_id", "o-1"}, {"x", "\"q\""}}));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ASSERT_EQ(h.value().size(), 2u);
  EXPECT_EQ(h.value()[0].second, "o-1");
  EXPECT_EQ(h.value()[1].second, "\"q\"");
  EXPECT_FALSE(DecodeOutboxHeaders("[1]").ok());
  EXPECT_FALSE(DecodeOutboxHeaders("{\"a\":1}").ok());
  EXPECT_FALSE(DecodeOutboxHeaders("{").ok());
  EXPECT_NE(NewOutboxMessageId(), NewOutboxMessageId());
  EXPECT_EQ(NewOutboxMessageId().size(), 32u);
}

TEST(OutboxTable, BadNamesRejected) {
  EXPECT_FALSE(Outbox({.table = "x; drop table y"}).SchemaSql(OutboxDialect::kSqlite).ok());
  EXPECT_FALSE(Outbox({.table = "s.t"}).SchemaSql(OutboxDialect::kSqlite).ok());
  EXPECT_TRUE(Outbox({.table = "s.t"}).SchemaSql(OutboxDialect::kPostgres).ok());
}

class SqliteOutbox : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() /
            ("dtx-outbox-test-" + std::to_string(::getpid()) + ".db");
    std::filesystem::remove(path_);
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db_), SQLITE_OK);
    ASSERT_TRUE(outbox_.EnsureTable(db_).ok());
    ASSERT_TRUE(outbox_.EnsureTable(db_).ok());  // idempotent
  }
  void TearDown() override {
    sqlite3_close(db_);
    std::filesystem::remove(path_);
  }
  void Exec(const char* sql) { ASSERT_EQ(sqlite3_exec(db_, sql, nullptr, nullptr, nullptr), 0); }
  int Count(const std::string& where) {
    int n = -1;
    std::string sql = "select count(*) from dtx_outbox where " + where;
    sqlite3_exec(
        db_, sql.c_str(),
        [](void* p, int, char** v, char**) {
          *static_cast<int*>(p) = std::atoi(v[0]);
          return 0;
        },
        &n, nullptr);
    return n;
  }

  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
  Outbox outbox_;
};

TEST_F(SqliteOutbox, RowCommitsAndRollsBackWithTheTransaction) {
  OutboxMessage m{
      .topic = "orders", .key = "o1", .payload = "created", .headers = {{"correlation_id", "o1"}}};
  Exec("BEGIN IMMEDIATE");
  ASSERT_TRUE(outbox_.Write(db_, m).ok());
  Exec("ROLLBACK");
  EXPECT_EQ(Count("1=1"), 0);
  Exec("BEGIN IMMEDIATE");
  Result<std::string> id = outbox_.Write(db_, m);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  Exec("COMMIT");
  EXPECT_EQ(Count("state = 0 and topic = 'orders' and msg_key = 'o1' and message_id = '" +
                  id.value() + "' and headers = '{\"correlation_id\":\"o1\"}'"),
            1);
}

TEST_F(SqliteOutbox, AutocommitWriteIsRefused) {
  Result<std::string> id = outbox_.Write(db_, {.topic = "t", .payload = "p"});
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Count("1=1"), 0);
}

TEST_F(SqliteOutbox, PlainSqlInsertGetsDefaults) {
  Exec("insert into dtx_outbox (topic, payload) values ('t', 'p')");
  EXPECT_EQ(Count("length(message_id) = 32 and headers = '{}' and state = 0 and attempts = 0 and "
                  "created_at > 1700000000000"),
            1);
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL

class PgOutbox : public ::testing::Test {
 protected:
  void SetUp() override {
    if (PgUrl() == nullptr) GTEST_SKIP() << "DTX_TEST_PG_URL is not set";
    conn_ = PQconnectdb(PgUrl());
    ASSERT_EQ(PQstatus(conn_), CONNECTION_OK) << PQerrorMessage(conn_);
    schema_ = "outbox_test_" + std::to_string(::getpid());
    Exec("drop schema if exists " + schema_ + " cascade");
    outbox_ = Outbox({.table = schema_ + ".events"});
    Status s = outbox_.EnsureTable(conn_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(outbox_.EnsureTable(conn_).ok());
  }
  void TearDown() override {
    if (conn_ != nullptr) {
      Exec("drop schema if exists " + schema_ + " cascade");
      PQfinish(conn_);
    }
  }
  void Exec(const std::string& sql, PGconn* c = nullptr) {
    PGresult* r = PQexec(c != nullptr ? c : conn_, sql.c_str());
    EXPECT_TRUE(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK)
        << sql << ": " << PQresultErrorMessage(r);
    PQclear(r);
  }
  int Count(const std::string& where) {
    std::string sql = "select count(*) from " + outbox_.table() + " where " + where;
    PGresult* r = PQexec(conn_, sql.c_str());
    int n = PQresultStatus(r) == PGRES_TUPLES_OK ? std::atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return n;
  }

  PGconn* conn_ = nullptr;
  std::string schema_;
  Outbox outbox_;
};

TEST_F(PgOutbox, RowCommitsAndRollsBackWithTheTransaction) {
  OutboxMessage m{.topic = "orders", .key = "o1", .payload = "created"};
  Exec("begin");
  ASSERT_TRUE(outbox_.Write(conn_, m).ok());
  Exec("rollback");
  EXPECT_EQ(Count("true"), 0);
  Exec("begin");
  Result<std::string> id = outbox_.Write(conn_, m);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  Exec("commit");
  EXPECT_EQ(Count("state = 0 and message_id = '" + id.value() + "'"), 1);
  Result<std::string> autocommit = outbox_.Write(conn_, m);
  EXPECT_EQ(autocommit.status().code(), Code::kInvalidArgument);
}

// Relays started together with --init and applications at start-up create the table at once:
// every EnsureTable succeeds (they are serialized; unserialized, they failed with a duplicate key
// in pg_type or a deadlock between the trigger function and the trigger).
TEST_F(PgOutbox, ConcurrentEnsureTableCallsAllSucceed) {
  constexpr int kCallers = 8;
  for (int round = 0; round < 4; ++round) {
    const Outbox fresh({.table = schema_ + ".fresh" + std::to_string(round)});
    std::vector<PGconn*> conns;
    for (int i = 0; i < kCallers; ++i) {
      conns.push_back(PQconnectdb(PgUrl()));
      ASSERT_EQ(PQstatus(conns.back()), CONNECTION_OK);
    }
    std::atomic<int> ready{0};
    std::vector<Status> results(kCallers);
    std::vector<std::thread> threads;
    for (int i = 0; i < kCallers; ++i) {
      threads.emplace_back([&, i] {
        ready.fetch_add(1);
        while (ready.load() < kCallers) std::this_thread::yield();
        results[i] = fresh.EnsureTable(conns[i]);
      });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kCallers; ++i) {
      EXPECT_TRUE(results[i].ok())
          << "round " << round << " caller " << i << ": " << results[i].ToString();
      PQfinish(conns[i]);
    }
  }
}

TEST_F(PgOutbox, InsertNotifiesTheRelayAtCommitOnly) {
  PGconn* listener = PQconnectdb(PgUrl());
  ASSERT_EQ(PQstatus(listener), CONNECTION_OK);
  Exec("listen " + OutboxNotifyChannel(outbox_.table()), listener);
  auto notified = [&](int wait_ms) {
    pollfd p{PQsocket(listener), POLLIN, 0};
    poll(&p, 1, wait_ms);
    PQconsumeInput(listener);
    bool any = false;
    while (PGnotify* n = PQnotifies(listener)) {
      any = true;
      PQfreemem(n);
    }
    return any;
  };
  // The relay's wake-up lock: writers notify only while a relay holds it.
  const std::string lock_key =
      "hashtextextended('" + OutboxNotifyChannel(outbox_.table()) + "', 0)";
  auto try_lock = [&] {
    PGresult* r = PQexec(listener, ("select pg_try_advisory_lock(" + lock_key + ")").c_str());
    const bool got = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return got;
  };
  // Nobody waits: a committed insert does not notify (no NOTIFY, no serialized commit).
  Exec("insert into " + outbox_.table() + " (topic, payload) values ('t', 'unwatched')");
  EXPECT_FALSE(notified(200));
  // A writer between its insert and its commit keeps a relay from arming; after it, the relay arms.
  Exec("begin");
  ASSERT_TRUE(outbox_.Write(conn_, {.topic = "t", .payload = "in flight"}).ok());
  EXPECT_FALSE(try_lock());
  Exec("commit");
  ASSERT_TRUE(try_lock());
  // Armed: only a commit notifies.
  Exec("begin");
  ASSERT_TRUE(outbox_.Write(conn_, {.topic = "t", .payload = "p"}).ok());
  EXPECT_FALSE(notified(100));
  Exec("rollback");
  EXPECT_FALSE(notified(100));
  Exec("insert into " + outbox_.table() + " (topic, payload) values ('t', 'plain sql')");
  EXPECT_TRUE(notified(2000));
  EXPECT_EQ(Count("length(message_id) = 32 and headers = '{}'"), 3);
  PQfinish(listener);
}

}  // namespace
}  // namespace dtx
