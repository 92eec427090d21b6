// Tests of the sub-transaction barrier (include/dtx/barrier.h, PROTOCOL.md §4 and BAR-01..06).
// The algorithm is checked step by step against a scripted fake database, then end to end on real
// databases: SQLite in WAL and in rollback-journal mode (temp files), and PostgreSQL when
// DTX_TEST_PG_URL is set (scripts/test.sh starts a private cluster and exports it); each
// PostgreSQL test runs in a fresh schema that it drops at the end.
#include "dtx/barrier.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dtx/barrier_pg.h"

namespace dtx {
namespace {

using namespace std::chrono_literals;
using Rows = std::vector<std::vector<std::string>>;

BranchBarrier MustBarrier(const std::string& trans_type, const std::string& gid,
                          const std::string& branch_id, const std::string& op) {
  Result<BranchBarrier> b = BranchBarrier::Create(trans_type, gid, branch_id, op);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  if (!b.ok()) std::abort();
  return std::move(b).value();
}

const char* PgUrl() {
  const char* url = std::getenv("DTX_TEST_PG_URL");
  return url != nullptr && *url != '\0' ? url : nullptr;
}
constexpr const char* kNoPgMessage =
    "DTX_TEST_PG_URL is not set: PostgreSQL barrier tests skipped (scripts/test.sh starts a "
    "private cluster and sets it)";

// ---------------------------------------------------------------------------------------------------
// Identity and validation

TEST(BranchBarrierCreate, AllFourFieldsRequired) {
  EXPECT_TRUE(BranchBarrier::Create("tcc", "g1", "01", "try").ok());
  for (int empty = 0; empty < 4; ++empty) {
    std::string f[4] = {"tcc", "g1", "01", "try"};
    f[empty].clear();
    Result<BranchBarrier> b = BranchBarrier::Create(f[0], f[1], f[2], f[3]);
    ASSERT_FALSE(b.ok()) << empty;
    EXPECT_EQ(b.status().code(), Code::kInvalidArgument) << b.status().ToString();
  }
}

TEST(BranchBarrierCreate, FromRequestAndForMsg) {
  BranchRequest r;
  r.gid = "g7";
  r.trans_type = "saga";
  r.branch_id = "03";
  r.op = "compensate";
  Result<BranchBarrier> b = BranchBarrier::FromRequest(r);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->gid(), "g7");
  EXPECT_EQ(b->trans_type(), "saga");
  EXPECT_EQ(b->branch_id(), "03");
  EXPECT_EQ(b->op(), "compensate");
  EXPECT_EQ(b->barrier_id(), 0);

  r.op.clear();  // a request not made by a coordinator
  EXPECT_EQ(BranchBarrier::FromRequest(r).status().code(), Code::kInvalidArgument);

  Result<BranchBarrier> m = BranchBarrier::ForMsg("g8");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->trans_type(), "msg");
  EXPECT_EQ(m->branch_id(), "00");
  EXPECT_EQ(m->op(), "msg");
}

TEST(BranchBarrierCreate, OversizeValuesRejected) {
  EXPECT_TRUE(
      BranchBarrier::Create("tcc", std::string(128, 'g'), std::string(128, 'b'), "try").ok());
  EXPECT_EQ(BranchBarrier::Create("tcc", std::string(129, 'g'), "01", "try").status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(BranchBarrier::Create("tcc", "g", std::string(129, 'b'), "try").status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(BranchBarrier::Create(std::string(46, 't'), "g", "01", "try").status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(BranchBarrier::Create("tcc", "g", "01", std::string(46, 'o')).status().code(),
            Code::kInvalidArgument);
  // Limits count characters, like varchar(n): 128 two-byte characters fit, 129 do not.
  std::string e_acute = "\xC3\xA9";
  std::string gid128, gid129;
  for (int i = 0; i < 128; ++i) gid128 += e_acute;
  gid129 = gid128 + e_acute;
  EXPECT_TRUE(BranchBarrier::Create("tcc", gid128, "01", "try").ok());
  EXPECT_EQ(BranchBarrier::Create("tcc", gid129, "01", "try").status().code(),
            Code::kInvalidArgument);
}

TEST(BranchBarrierCreate, NulAndInvalidUtf8Rejected) {
  EXPECT_EQ(BranchBarrier::Create("tcc", std::string("g\0x", 3), "01", "try").status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(BranchBarrier::Create("tcc", "g\xFF", "01", "try").status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(BranchBarrier::Create("tcc", "g\xC0\xAF", "01", "try").status().code(),  // overlong
            Code::kInvalidArgument);
  EXPECT_EQ(
      BranchBarrier::Create("tcc", "g\xED\xA0\x80", "01", "try").status().code(),  // surrogate
      Code::kInvalidArgument);
  EXPECT_EQ(BranchBarrier::Create("tcc", "g\xE2\x82", "01", "try").status().code(),  // truncated
            Code::kInvalidArgument);
  EXPECT_TRUE(BranchBarrier::Create("tcc", "g-\xE2\x82\xAC-\xF0\x9F\x98\x80", "01", "try").ok());
}

TEST(ValidateBarrierRow, EveryFieldChecked) {
  BarrierRow ok{"tcc", "g", "01", "try", "01", "try"};
  EXPECT_TRUE(ValidateBarrierRow(ok).ok());
  BarrierRow r = ok;
  r.reason = "";
  EXPECT_EQ(ValidateBarrierRow(r).code(), Code::kInvalidArgument);
  r = ok;
  std::string long_id(46, '1');
  r.barrier_id = long_id;
  EXPECT_EQ(ValidateBarrierRow(r).code(), Code::kInvalidArgument);
  EXPECT_NE(ValidateBarrierRow(r).message().find("barrier_id"), std::string::npos);
}

TEST(BarrierBranchResult, MapsToDtmAnswers) {
  BranchResult ok = BarrierBranchResult(Status::Ok());
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, BranchResult::Success().body);
  BranchResult failure = BarrierBranchResult(Status::Conflict("no money"));
  EXPECT_EQ(failure.status, 409);
  EXPECT_NE(failure.body.find("FAILURE"), std::string::npos);
  EXPECT_EQ(BarrierBranchResult(Status::Ongoing("later")).status, 425);
  BranchResult error = BarrierBranchResult(Status::Unavailable("db down"));
  EXPECT_EQ(error.status, 500);
  EXPECT_EQ(error.body.find("FAILURE"), std::string::npos);
  EXPECT_EQ(error.body.find("ONGOING"), std::string::npos);
  EXPECT_EQ(BarrierBranchResult(Status::AlreadyExists("DUPLICATED")).status, 500);
}

// ---------------------------------------------------------------------------------------------------
// The algorithm step by step, on a scripted fake database

class FakeDb final : public BarrierDb {
 public:
  std::vector<std::string> log;
  std::deque<Result<int>> insert_results;  // one per InsertIgnore, in order
  Status begin_status;
  Status commit_status;
  bool in_tx = false;

  Status Begin() override {
    log.push_back("begin");
    if (begin_status.ok()) in_tx = true;
    return begin_status;
  }
  Result<int> InsertIgnore(const BarrierRow& r) override {
    log.push_back("insert " + std::string(r.trans_type) + "|" + std::string(r.gid) + "|" +
                  std::string(r.branch_id) + "|" + std::string(r.op) + "|" +
                  std::string(r.barrier_id) + "|" + std::string(r.reason));
    if (insert_results.empty()) return Status::Internal("unscripted insert");
    Result<int> next = insert_results.front();
    insert_results.pop_front();
    return next;
  }
  Result<std::string> SelectReason(std::string_view, std::string_view, std::string_view,
                                   std::string_view) override {
    log.push_back("select");
    return Status::NotFound("fake");
  }
  Status Commit() override {
    log.push_back("commit");
    in_tx = false;
    return commit_status;
  }
  void Rollback() override {
    log.push_back("rollback");
    in_tx = false;
  }
  bool InTransaction() const override { return in_tx; }
};

struct TraceCase {
  std::string op;
  std::vector<int> affected;  // scripted results of the inserts
  std::vector<std::string> want_log;
  Code want_code;
};

TEST(BarrierAlgorithm, FollowsSection43) {
  const std::vector<TraceCase> cases = {
      {"try", {1}, {"begin", "insert tcc|g|01|try|01|try", "business", "commit"}, Code::kOk},
      {"try", {0}, {"begin", "insert tcc|g|01|try|01|try", "commit"}, Code::kOk},  // dup/hanging
      {"confirm",
       {1},
       {"begin", "insert tcc|g|01|confirm|01|confirm", "business", "commit"},
       Code::kOk},
      {"confirm", {0}, {"begin", "insert tcc|g|01|confirm|01|confirm", "commit"}, Code::kOk},
      {"cancel",
       {0, 1},
       {"begin", "insert tcc|g|01|try|01|cancel", "insert tcc|g|01|cancel|01|cancel", "business",
        "commit"},
       Code::kOk},
      {"cancel",  // null compensation
       {1, 1},
       {"begin", "insert tcc|g|01|try|01|cancel", "insert tcc|g|01|cancel|01|cancel", "commit"},
       Code::kOk},
      {"cancel",  // duplicate
       {0, 0},
       {"begin", "insert tcc|g|01|try|01|cancel", "insert tcc|g|01|cancel|01|cancel", "commit"},
       Code::kOk},
      {"compensate",
       {1, 1},
       {"begin", "insert tcc|g|01|action|01|compensate", "insert tcc|g|01|compensate|01|compensate",
        "commit"},
       Code::kOk},
      {"rollback",
       {0, 1},
       {"begin", "insert tcc|g|01|action|01|rollback", "insert tcc|g|01|rollback|01|rollback",
        "business", "commit"},
       Code::kOk},
      {"msg", {1}, {"begin", "insert tcc|g|01|msg|01|msg", "business", "commit"}, Code::kOk},
      {"msg", {0}, {"begin", "insert tcc|g|01|msg|01|msg", "rollback"}, Code::kAlreadyExists},
  };
  for (const TraceCase& c : cases) {
    SCOPED_TRACE(c.op + " affected " + std::to_string(c.affected.size()));
    FakeDb db;
    for (int a : c.affected) db.insert_results.push_back(a);
    BranchBarrier b = MustBarrier("tcc", "g", "01", c.op);
    Status s = b.Call(db, [&] {
      db.log.push_back("business");
      return Status::Ok();
    });
    EXPECT_EQ(s.code(), c.want_code) << s.ToString();
    EXPECT_EQ(db.log, c.want_log);
    if (c.want_code == Code::kAlreadyExists) {
      EXPECT_EQ(s.message(), "DUPLICATED");
    }
  }
}

TEST(BarrierAlgorithm, ErrorsRollBackAndSkipBusiness) {
  {  // the origin insert fails
    FakeDb db;
    db.insert_results.push_back(Status::Unavailable("gone"));
    BranchBarrier b = MustBarrier("tcc", "g", "01", "cancel");
    bool ran = false;
    Status s = b.Call(db, [&] {
      ran = true;
      return Status::Ok();
    });
    EXPECT_EQ(s.code(), Code::kUnavailable);
    EXPECT_FALSE(ran);
    EXPECT_EQ(db.log.back(), "rollback");
  }
  {  // the current insert fails
    FakeDb db;
    db.insert_results.push_back(Status::Timeout("busy"));
    BranchBarrier b = MustBarrier("saga", "g", "01", "action");
    Status s = b.Call(db, [&] { return Status::Ok(); });
    EXPECT_EQ(s.code(), Code::kTimeout);
    EXPECT_EQ(db.log.back(), "rollback");
  }
  {  // the business code fails: its status comes back unchanged
    FakeDb db;
    db.insert_results.push_back(1);
    BranchBarrier b = MustBarrier("saga", "g", "01", "action");
    Status s = b.Call(db, [&] { return Status::Conflict("insufficient balance"); });
    EXPECT_EQ(s.code(), Code::kConflict);
    EXPECT_EQ(s.message(), "insufficient balance");
    EXPECT_EQ(db.log.back(), "rollback");
  }
  {  // the commit fails
    FakeDb db;
    db.insert_results.push_back(1);
    db.commit_status = Status::IoError("disk full");
    BranchBarrier b = MustBarrier("saga", "g", "01", "action");
    EXPECT_EQ(b.Call(db, [&] { return Status::Ok(); }).code(), Code::kIoError);
  }
  {  // the begin fails: no insert, but the id is taken (ids depend only on call order)
    FakeDb db;
    db.begin_status = Status::InvalidArgument("already in a transaction");
    BranchBarrier b = MustBarrier("saga", "g", "01", "action");
    EXPECT_EQ(b.Call(db, [&] { return Status::Ok(); }).code(), Code::kInvalidArgument);
    EXPECT_EQ(db.log, std::vector<std::string>{"begin"});
    EXPECT_EQ(b.barrier_id(), 1);
  }
  {  // an exception rolls back and propagates
    FakeDb db;
    db.insert_results.push_back(1);
    BranchBarrier b = MustBarrier("saga", "g", "01", "action");
    EXPECT_THROW((void)b.Call(db, [&]() -> Status { throw std::runtime_error("boom"); }),
                 std::runtime_error);
    EXPECT_EQ(db.log.back(), "rollback");
  }
}

TEST(BarrierAlgorithm, BarrierIdsCountCalls) {
  FakeDb db;
  for (int i = 0; i < 12; ++i) db.insert_results.push_back(1);
  BranchBarrier b = MustBarrier("saga", "g", "01", "action");
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(b.Call(db, [] { return Status::Ok(); }).ok());
  EXPECT_EQ(b.barrier_id(), 12);
  EXPECT_EQ(db.log[1], "insert saga|g|01|action|01|action");
  EXPECT_EQ(db.log[4], "insert saga|g|01|action|02|action");
  EXPECT_EQ(db.log[31], "insert saga|g|01|action|11|action");
}

TEST(BarrierAlgorithm, QueryPreparedNeedsAutocommit) {
  FakeDb db;
  db.in_tx = true;
  BranchBarrier b = MustBarrier("msg", "g", "00", "msg");
  EXPECT_EQ(b.QueryPrepared(db).code(), Code::kInvalidArgument);
  EXPECT_TRUE(db.log.empty());
}

// ---------------------------------------------------------------------------------------------------
// Real databases

struct ConnOptions {
  std::string table;                          // empty: the backend's barrier table
  std::chrono::milliseconds timeout{10'000};  // SQLite busy_timeout / PostgreSQL lock_timeout
};

// One connection of a backend, with what the tests need around the barrier adapter.
class Conn {
 public:
  virtual ~Conn() = default;
  virtual BarrierDb& db() = 0;
  // bb.Call through the typed overload of the backend; checks that the Tx is this connection.
  virtual Status Call(BranchBarrier& bb, const std::function<Status(Conn&)>& business) = 0;
  virtual Status EnsureTable() = 0;
  virtual Status Exec(const std::string& sql) = 0;
  virtual Result<Rows> Query(const std::string& sql) = 0;

  // The first column of the first row ("<none>" when there is none).
  std::string One(const std::string& sql) {
    Result<Rows> rows = Query(sql);
    EXPECT_TRUE(rows.ok()) << sql << ": " << rows.status().ToString();
    if (!rows.ok() || rows->empty() || (*rows)[0].empty()) return "<none>";
    return (*rows)[0][0];
  }
  int64_t Int(const std::string& sql) {
    std::string v = One(sql);
    return v == "<none>" ? -1 : std::stoll(v);
  }
};

class SqliteConn final : public Conn {
 public:
  SqliteConn(const std::string& path, const ConnOptions& options) {
    int rc =
        sqlite3_open_v2(path.c_str(), &raw_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    EXPECT_EQ(rc, SQLITE_OK);
    SqliteBarrierOptions o;
    if (!options.table.empty()) o.table = options.table;
    o.busy_timeout = options.timeout;
    db_ = std::make_unique<SqliteDb>(raw_, o);
  }
  ~SqliteConn() override {
    db_.reset();
    sqlite3_close_v2(raw_);
  }
  sqlite3* raw() const { return raw_; }
  BarrierDb& db() override { return *db_; }
  Status Call(BranchBarrier& bb, const std::function<Status(Conn&)>& business) override {
    return bb.Call(*db_, [&](SqliteTx& tx) {
      EXPECT_EQ(tx.db, raw_);
      EXPECT_EQ(sqlite3_get_autocommit(tx.db), 0);  // inside the barrier's transaction
      return business(*this);
    });
  }
  Status EnsureTable() override { return EnsureBarrierTable(*db_); }
  Status Exec(const std::string& sql) override {
    char* err = nullptr;
    int rc = sqlite3_exec(raw_, sql.c_str(), nullptr, nullptr, &err);
    std::string msg = err != nullptr ? err : "";
    sqlite3_free(err);
    if (rc != SQLITE_OK) return Status::Internal(sql + ": " + msg);
    return Status::Ok();
  }
  Result<Rows> Query(const std::string& sql) override {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(raw_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      return Status::Internal(sql + ": " + sqlite3_errmsg(raw_));
    }
    Rows rows;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(stmt, i));
        row.push_back(t != nullptr ? t : "NULL");
      }
      rows.push_back(std::move(row));
    }
    std::string err = sqlite3_errmsg(raw_);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) return Status::Internal(sql + ": " + err);
    return rows;
  }

 private:
  sqlite3* raw_ = nullptr;
  std::unique_ptr<SqliteDb> db_;
};

class PgConn final : public Conn {
 public:
  PgConn(const std::string& url, const ConnOptions& options, const std::string& default_table) {
    raw_ = PQconnectdb(url.c_str());
    EXPECT_EQ(PQstatus(raw_), CONNECTION_OK) << PQerrorMessage(raw_);
    PQclear(PQexec(raw_, "set client_min_messages = warning"));  // no NOTICEs on stderr
    PgBarrierOptions o;
    o.table = options.table.empty() ? default_table : options.table;
    o.lock_timeout = options.timeout;
    db_ = std::make_unique<PgDb>(raw_, o);
  }
  ~PgConn() override {
    db_.reset();
    PQfinish(raw_);
  }
  PGconn* raw() const { return raw_; }
  BarrierDb& db() override { return *db_; }
  Status Call(BranchBarrier& bb, const std::function<Status(Conn&)>& business) override {
    return bb.Call(*db_, [&](PgTx& tx) {
      EXPECT_EQ(tx.conn, raw_);
      EXPECT_EQ(PQtransactionStatus(tx.conn), PQTRANS_INTRANS);
      return business(*this);
    });
  }
  Status EnsureTable() override { return EnsureBarrierTable(*db_); }
  Status Exec(const std::string& sql) override {
    Result<Rows> r = Query(sql);
    return r.ok() ? Status::Ok() : r.status();
  }
  Result<Rows> Query(const std::string& sql) override {
    PGresult* res = PQexec(raw_, sql.c_str());
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      std::string msg = PQresultErrorMessage(res);
      PQclear(res);
      return Status::Internal(sql + ": " + msg);
    }
    Rows rows;
    for (int r = 0; r < PQntuples(res); ++r) {
      std::vector<std::string> row;
      for (int c = 0; c < PQnfields(res); ++c) {
        row.push_back(PQgetisnull(res, r, c) ? "NULL" : PQgetvalue(res, r, c));
      }
      rows.push_back(std::move(row));
    }
    PQclear(res);
    return rows;
  }

 private:
  PGconn* raw_ = nullptr;
  std::unique_ptr<PgDb> db_;
};

// A database for one test: connections to it, and names of tables in it.
class Backend {
 public:
  virtual ~Backend() = default;
  std::unique_ptr<Conn> Connect(const ConnOptions& options = {}) { return DoConnect(options); }
  // A business table name (schema-qualified on PostgreSQL).
  virtual std::string Name(const std::string& table) const = 0;
  virtual std::string BarrierTable() const = 0;
  virtual std::string AutoIdColumn() const = 0;

 protected:
  virtual std::unique_ptr<Conn> DoConnect(const ConnOptions& options) = 0;
};

class SqliteBackend final : public Backend {
 public:
  explicit SqliteBackend(bool wal) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "dtx_barrier_XXXXXX").string();
    char* dir = mkdtemp(tmpl.data());
    EXPECT_NE(dir, nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/test.db";
    if (wal) {
      SqliteConn c(path_, {});
      EXPECT_TRUE(c.Exec("pragma journal_mode=wal").ok());
    }
  }
  ~SqliteBackend() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::unique_ptr<Conn> DoConnect(const ConnOptions& options) override {
    return std::make_unique<SqliteConn>(path_, options);
  }
  std::string Name(const std::string& table) const override { return table; }
  std::string BarrierTable() const override { return "dtm_barrier"; }
  std::string AutoIdColumn() const override { return "id integer primary key autoincrement"; }
  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
};

class PgBackend final : public Backend {
 public:
  explicit PgBackend(std::string url) : url_(std::move(url)) {
    static std::atomic<int> counter{0};
    schema_ = "dtx_bt_" + std::to_string(getpid()) + "_" + std::to_string(counter++);
    admin_ = std::make_unique<PgConn>(url_, ConnOptions{}, BarrierTable());
    EXPECT_TRUE(admin_->Exec("drop schema if exists " + schema_ + " cascade").ok());
  }
  ~PgBackend() override {
    Status s = admin_->Exec("drop schema if exists " + schema_ + " cascade");
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  std::unique_ptr<Conn> DoConnect(const ConnOptions& options) override {
    return std::make_unique<PgConn>(url_, options, BarrierTable());
  }
  std::string Name(const std::string& table) const override { return schema_ + "." + table; }
  std::string BarrierTable() const override { return schema_ + ".barrier"; }
  std::string AutoIdColumn() const override { return "id bigserial primary key"; }
  const std::string& schema() const { return schema_; }
  const std::string& url() const { return url_; }

 private:
  std::string url_;
  std::string schema_;
  std::unique_ptr<PgConn> admin_;
};

// Runs every test on SQLite (WAL and rollback journal) and PostgreSQL. Each test gets a fresh
// database with the barrier table, an account table (id 1: balance 100, frozen 0) and a markers
// table where business code records (gid, op) each time it runs: a marker exists only if the
// business transaction committed.
class BarrierDbTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "Postgres") {
      const char* url = PgUrl();
      if (url == nullptr) GTEST_SKIP() << kNoPgMessage;
      backend_ = std::make_unique<PgBackend>(url);
    } else {
      backend_ = std::make_unique<SqliteBackend>(GetParam() == "SqliteWal");
    }
    conn_ = backend_->Connect();
    account_ = backend_->Name("account");
    markers_ = backend_->Name("markers");
    ASSERT_TRUE(conn_->EnsureTable().ok());
    ASSERT_TRUE(conn_
                    ->Exec("create table " + account_ +
                           "(id integer primary key, balance bigint not null, frozen bigint not "
                           "null)")
                    .ok());
    ASSERT_TRUE(conn_->Exec("insert into " + account_ + " values(1, 100, 0)").ok());
    ASSERT_TRUE(conn_
                    ->Exec("create table " + markers_ + "(" + backend_->AutoIdColumn() +
                           ", gid text not null, op text not null)")
                    .ok());
  }
  void TearDown() override {
    conn_.reset();
    backend_.reset();
  }

  // Business code: moves `delta` into the balance and records that it ran.
  Status Business(Conn& c, const std::string& gid, const std::string& op, int delta) {
    Status s = c.Exec("update " + account_ + " set balance = balance + " + std::to_string(delta) +
                      " where id = 1");
    if (!s.ok()) return s;
    return c.Exec("insert into " + markers_ + "(gid, op) values('" + gid + "', '" + op + "')");
  }
  int64_t Balance() { return conn_->Int("select balance from " + account_ + " where id = 1"); }
  int64_t Runs(const std::string& gid, const std::string& op) {
    return conn_->Int("select count(*) from " + markers_ + " where gid = '" + gid + "' and op = '" +
                      op + "'");
  }
  // The barrier rows of `gid` as "trans_type gid branch_id op barrier_id reason", in insert order.
  std::vector<std::string> BarrierRows(const std::string& gid) {
    Result<Rows> rows =
        conn_->Query("select trans_type, gid, branch_id, op, barrier_id, reason from " +
                     backend_->BarrierTable() + " where gid = '" + gid + "' order by id");
    EXPECT_TRUE(rows.ok()) << rows.status().ToString();
    std::vector<std::string> out;
    if (!rows.ok()) return out;
    for (const auto& r : *rows) {
      std::string line;
      for (const auto& v : r) line += (line.empty() ? "" : " ") + v;
      out.push_back(line);
    }
    return out;
  }
  // One delivery of (trans_type, gid, "01", op) whose business code moves `delta`.
  Status Deliver(Conn& c, const std::string& trans_type, const std::string& gid,
                 const std::string& op, int delta) {
    BranchBarrier bb = MustBarrier(trans_type, gid, "01", op);
    Status s = c.Call(bb, [&](Conn& tx) { return Business(tx, gid, op, delta); });
    EXPECT_FALSE(c.db().InTransaction()) << "Call must end its transaction";
    return s;
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Conn> conn_;
  std::string account_;
  std::string markers_;
};

TEST_P(BarrierDbTest, EnsureTableIsIdempotent) {
  EXPECT_TRUE(conn_->EnsureTable().ok());
  EXPECT_TRUE(conn_->EnsureTable().ok());
  EXPECT_EQ(conn_->Int("select count(*) from " + backend_->BarrierTable()), 0);
}

// BAR-01
TEST_P(BarrierDbTest, Bar01DuplicateDeliveryRunsBusinessOnce) {
  struct Step {
    std::string trans_type, gid, op;
    int delta;
  };
  const std::vector<Step> steps = {
      {"saga", "s1", "action", -10}, {"saga", "s1", "compensate", 10},  // saga action + compensate
      {"tcc", "t1", "try", -5},      {"tcc", "t1", "confirm", 0},       // tcc try + confirm
      {"tcc", "t2", "try", -7},      {"tcc", "t2", "cancel", 7},        // tcc try + cancel
      {"msg", "m1", "action", 3},                                       // msg action
  };
  for (const Step& s : steps) {
    for (int delivery = 0; delivery < 3; ++delivery) {
      Status st = Deliver(*conn_, s.trans_type, s.gid, s.op, s.delta);
      EXPECT_TRUE(st.ok()) << s.gid << " " << s.op << " #" << delivery << ": " << st.ToString();
    }
    EXPECT_EQ(Runs(s.gid, s.op), 1) << s.gid << " " << s.op;
  }
  EXPECT_EQ(Balance(), 100 - 10 + 10 - 5 - 7 + 7 + 3);
}

// BAR-02
TEST_P(BarrierDbTest, Bar02UndoBeforeForwardIsNullCompensationAndLateForwardIsSkipped) {
  const std::vector<std::pair<std::string, std::pair<std::string, std::string>>> pairs = {
      {"tcc", {"try", "cancel"}},
      {"saga", {"action", "compensate"}},
      {"xa", {"action", "rollback"}}};
  for (const auto& [trans_type, ops] : pairs) {
    const auto& [forward, undo] = ops;
    const std::string gid = "null-" + trans_type;
    EXPECT_TRUE(Deliver(*conn_, trans_type, gid, undo, +50).ok());     // arrives first
    EXPECT_TRUE(Deliver(*conn_, trans_type, gid, forward, -50).ok());  // late: must not run
    EXPECT_TRUE(Deliver(*conn_, trans_type, gid, undo, +50).ok());     // retried undo
    EXPECT_EQ(Runs(gid, undo), 0) << gid;
    EXPECT_EQ(Runs(gid, forward), 0) << gid;
    EXPECT_EQ(BarrierRows(gid), (std::vector<std::string>{
                                    trans_type + " " + gid + " 01 " + forward + " 01 " + undo,
                                    trans_type + " " + gid + " 01 " + undo + " 01 " + undo,
                                }));
  }
  EXPECT_EQ(Balance(), 100);
}

// BAR-03
TEST_P(BarrierDbTest, Bar03BusinessErrorRollsBackBarrierRows) {
  BranchBarrier first = MustBarrier("saga", "e1", "01", "action");
  Status s = conn_->Call(first, [&](Conn& c) {
    Status b = Business(c, "e1", "action", -30);
    EXPECT_TRUE(b.ok()) << b.ToString();
    return Status::Conflict("insufficient balance");  // refuse after having written
  });
  EXPECT_EQ(s.code(), Code::kConflict);
  EXPECT_EQ(s.message(), "insufficient balance");
  EXPECT_EQ(BarrierBranchResult(s).status, 409);
  EXPECT_FALSE(conn_->db().InTransaction());
  EXPECT_TRUE(BarrierRows("e1").empty());
  EXPECT_EQ(Runs("e1", "action"), 0);
  EXPECT_EQ(Balance(), 100);

  // The retry runs the business code again.
  EXPECT_TRUE(Deliver(*conn_, "saga", "e1", "action", -30).ok());
  EXPECT_EQ(Runs("e1", "action"), 1);
  EXPECT_EQ(Balance(), 70);
  EXPECT_EQ(BarrierRows("e1"), std::vector<std::string>{"saga e1 01 action 01 action"});
}

TEST_P(BarrierDbTest, ExceptionFromBusinessRollsBackAndIsRethrown) {
  BranchBarrier bb = MustBarrier("tcc", "x1", "01", "try");
  EXPECT_THROW((void)conn_->Call(bb,
                                 [&](Conn& c) -> Status {
                                   EXPECT_TRUE(Business(c, "x1", "try", -40).ok());
                                   throw std::runtime_error("business bug");
                                 }),
               std::runtime_error);
  EXPECT_FALSE(conn_->db().InTransaction());
  EXPECT_TRUE(BarrierRows("x1").empty());
  EXPECT_EQ(Balance(), 100);
  EXPECT_TRUE(Deliver(*conn_, "tcc", "x1", "try", -40).ok());
  EXPECT_EQ(Balance(), 60);
}

// BAR-04
TEST_P(BarrierDbTest, Bar04TwoCallsInOneHandlerUse01And02) {
  auto second_conn = backend_->Connect();  // e.g. a second database of the same handler
  auto handler = [&](int& runs) {
    BranchBarrier bb = MustBarrier("saga", "h1", "01", "action");
    Status a = conn_->Call(bb, [&](Conn& c) {
      ++runs;
      return Business(c, "h1", "first", -1);
    });
    Status b = second_conn->Call(bb, [&](Conn& c) {
      ++runs;
      return Business(c, "h1", "second", -2);
    });
    EXPECT_TRUE(a.ok()) << a.ToString();
    EXPECT_TRUE(b.ok()) << b.ToString();
    EXPECT_EQ(bb.barrier_id(), 2);
  };
  int runs = 0;
  handler(runs);
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(BarrierRows("h1"), (std::vector<std::string>{"saga h1 01 action 01 action",
                                                         "saga h1 01 action 02 action"}));
  runs = 0;
  handler(runs);  // the retried request: a new barrier object, ids 01 and 02 again
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(Balance(), 97);
  EXPECT_EQ(BarrierRows("h1").size(), 2u);
}

// BAR-05: QueryPrepared concurrent with the producer's open local "msg" transaction waits for it.
TEST_P(BarrierDbTest, Bar05QueryPreparedWaitsForOpenMsgTransaction) {
  for (bool commit : {true, false}) {
    SCOPED_TRACE(commit ? "producer commits" : "producer rolls back");
    const std::string gid = commit ? "msg-commit" : "msg-rollback";
    auto producer_conn = backend_->Connect();
    auto checker_conn = backend_->Connect();
    std::promise<void> inside;
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    Status producer_status;
    std::thread producer([&] {
      BranchBarrier bb = BranchBarrier::ForMsg(gid).value();
      producer_status = producer_conn->Call(bb, [&](Conn& c) {
        Status s = Business(c, gid, "msg", -20);
        inside.set_value();
        released.wait();
        return commit ? s : Status::Conflict("business refused");
      });
    });
    inside.get_future().wait();
    auto check = std::async(std::launch::async, [&] {
      BranchBarrier bb = MustBarrier("msg", gid, "00", "msg");
      return bb.QueryPrepared(checker_conn->db());
    });
    // The check-back cannot decide while the local transaction is open: it waits for it.
    EXPECT_EQ(check.wait_for(300ms), std::future_status::timeout);
    release.set_value();
    producer.join();
    Status answer = check.get();
    if (commit) {
      EXPECT_TRUE(producer_status.ok()) << producer_status.ToString();
      EXPECT_TRUE(answer.ok()) << answer.ToString();
      EXPECT_EQ(BarrierBranchResult(answer).status, 200);
      EXPECT_EQ(BarrierRows(gid), std::vector<std::string>{"msg " + gid + " 00 msg 01 msg"});
      EXPECT_EQ(Runs(gid, "msg"), 1);
    } else {
      EXPECT_EQ(producer_status.code(), Code::kConflict);
      EXPECT_EQ(answer.code(), Code::kConflict) << answer.ToString();
      EXPECT_EQ(BarrierBranchResult(answer).status, 409);
      EXPECT_EQ(BarrierRows(gid), std::vector<std::string>{"msg " + gid + " 00 msg 01 rollback"});
      // A later local transaction for that gid is refused: the message is decided.
      BranchBarrier again = BranchBarrier::ForMsg(gid).value();
      bool ran = false;
      Status late = producer_conn->Call(again, [&](Conn&) {
        ran = true;
        return Status::Ok();
      });
      EXPECT_EQ(late.code(), Code::kAlreadyExists);
      EXPECT_EQ(late.message(), "DUPLICATED");
      EXPECT_FALSE(ran);
      EXPECT_FALSE(producer_conn->db().InTransaction());
      EXPECT_EQ(Runs(gid, "msg"), 0);
    }
    // Asking again gives the same answer.
    BranchBarrier bb = MustBarrier("msg", gid, "00", "msg");
    EXPECT_EQ(bb.QueryPrepared(checker_conn->db()).code(), answer.code());
    EXPECT_EQ(bb.barrier_id(), 0);
  }
  EXPECT_EQ(Balance(), 80);
}

// MSG-11: a check-back before the local transaction started decides "rollback".
TEST_P(BarrierDbTest, QueryPreparedFirstMakesLaterMsgDuplicated) {
  BranchBarrier check = MustBarrier("msg", "early", "00", "msg");
  EXPECT_EQ(check.QueryPrepared(conn_->db()).code(), Code::kConflict);
  BranchBarrier producer = BranchBarrier::ForMsg("early").value();
  Status s = conn_->Call(producer, [&](Conn& c) { return Business(c, "early", "msg", -1); });
  EXPECT_EQ(s.code(), Code::kAlreadyExists);
  EXPECT_EQ(s.message(), kDuplicatedMessage);
  EXPECT_EQ(Runs("early", "msg"), 0);
  EXPECT_EQ(Balance(), 100);
}

// BAR-06: libdtx writes exactly DTM's values, and recognises rows a DTM SDK wrote.
TEST_P(BarrierDbTest, Bar06RowsHaveDtmValues) {
  EXPECT_TRUE(Deliver(*conn_, "tcc", "d1", "try", -1).ok());
  EXPECT_TRUE(Deliver(*conn_, "tcc", "d1", "confirm", 0).ok());
  EXPECT_TRUE(Deliver(*conn_, "tcc", "d2", "try", -1).ok());
  EXPECT_TRUE(Deliver(*conn_, "tcc", "d2", "cancel", 1).ok());
  EXPECT_TRUE(Deliver(*conn_, "saga", "d3", "compensate", 1).ok());
  BranchBarrier check = MustBarrier("msg", "d4", "00", "msg");
  EXPECT_EQ(check.QueryPrepared(conn_->db()).code(), Code::kConflict);
  BranchBarrier producer = BranchBarrier::ForMsg("d5").value();
  EXPECT_TRUE(conn_->Call(producer, [](Conn&) { return Status::Ok(); }).ok());

  Result<Rows> rows =
      conn_->Query("select trans_type, gid, branch_id, op, barrier_id, reason from " +
                   backend_->BarrierTable() + " order by id");
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  const Rows expected = {
      {"tcc", "d1", "01", "try", "01", "try"},
      {"tcc", "d1", "01", "confirm", "01", "confirm"},
      {"tcc", "d2", "01", "try", "01", "try"},
      {"tcc", "d2", "01", "cancel", "01", "cancel"},  // the origin insert found "try": no row
      {"saga", "d3", "01", "action", "01", "compensate"},
      {"saga", "d3", "01", "compensate", "01", "compensate"},
      {"msg", "d4", "00", "msg", "01", "rollback"},
      {"msg", "d5", "00", "msg", "01", "msg"},
  };
  EXPECT_EQ(*rows, expected);
  // Every row has its id and both times set by the table's defaults.
  EXPECT_EQ(conn_->Int("select count(*) from " + backend_->BarrierTable() +
                       " where id is null or create_time is null or update_time is null"),
            0);

  // Rows written by a DTM SDK (the same statement, another process) are recognised.
  ASSERT_TRUE(conn_
                  ->Exec("insert into " + backend_->BarrierTable() +
                         "(trans_type, gid, branch_id, op, barrier_id, reason) values"
                         "('tcc', 'go1', '01', 'try', '01', 'try'),"
                         "('msg', 'go2', '00', 'msg', '01', 'msg')")
                  .ok());
  EXPECT_TRUE(Deliver(*conn_, "tcc", "go1", "try", -1).ok());  // a duplicate of the Go try
  EXPECT_EQ(Runs("go1", "try"), 0);
  EXPECT_TRUE(Deliver(*conn_, "tcc", "go1", "cancel", 1).ok());  // the try ran: really cancel
  EXPECT_EQ(Runs("go1", "cancel"), 1);
  BranchBarrier go_check = MustBarrier("msg", "go2", "00", "msg");
  EXPECT_TRUE(go_check.QueryPrepared(conn_->db()).ok());
}

TEST_P(BarrierDbTest, OversizeValuesAreRejectedBeforeInsert) {
  std::string gid(129, 'g');
  for (bool in_tx : {false, true}) {
    if (in_tx) {
      ASSERT_TRUE(conn_->db().Begin().ok());
    }
    Result<int> r = conn_->db().InsertIgnore({"tcc", gid, "01", "try", "01", "try"});
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    std::string op(46, 'o');
    r = conn_->db().InsertIgnore({"tcc", "g", "01", op, "01", "try"});
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    r = conn_->db().InsertIgnore({"tcc", "g", "01", "try", "01", ""});  // never NULL or empty
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    if (in_tx) conn_->db().Rollback();
  }
  EXPECT_EQ(conn_->Int("select count(*) from " + backend_->BarrierTable()), 0);
  // The largest values fit the columns and round-trip unchanged.
  std::string big_gid(128, 'G'), big_branch(128, 'B'), big_op(45, 'o');
  BranchBarrier bb = MustBarrier(std::string(45, 't'), big_gid, big_branch, big_op);
  EXPECT_TRUE(conn_->Call(bb, [](Conn&) { return Status::Ok(); }).ok());
  EXPECT_EQ(
      conn_->One("select op from " + backend_->BarrierTable() + " where gid = '" + big_gid + "'"),
      big_op);
}

TEST_P(BarrierDbTest, CallNeedsItsOwnTransaction) {
  ASSERT_TRUE(conn_->Exec("begin").ok());
  BranchBarrier bb = MustBarrier("saga", "own", "01", "action");
  bool ran = false;
  Status s = conn_->Call(bb, [&](Conn&) {
    ran = true;
    return Status::Ok();
  });
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_FALSE(ran);
  EXPECT_TRUE(conn_->db().InTransaction());  // the caller's transaction is left alone
  ASSERT_TRUE(conn_->Exec("rollback").ok());
  BranchBarrier check = MustBarrier("msg", "own", "00", "msg");
  ASSERT_TRUE(conn_->Exec("begin").ok());
  EXPECT_EQ(check.QueryPrepared(conn_->db()).code(), Code::kInvalidArgument);
  ASSERT_TRUE(conn_->Exec("rollback").ok());
}

TEST_P(BarrierDbTest, BusinessThatEndsTheTransactionIsReported) {
  for (const char* end : {"commit", "rollback"}) {
    const std::string gid = std::string("end-") + end;
    BranchBarrier bb = MustBarrier("saga", gid, "01", "action");
    Status s = conn_->Call(bb, [&](Conn& c) {
      EXPECT_TRUE(Business(c, gid, "action", 0).ok());
      return c.Exec(end);
    });
    EXPECT_EQ(s.code(), Code::kInternal) << end << ": " << s.ToString();
    EXPECT_FALSE(conn_->db().InTransaction());
  }
  // After a business COMMIT the rows are there, so the coordinator's retry is a duplicate.
  EXPECT_TRUE(Deliver(*conn_, "saga", "end-commit", "action", 0).ok());
  EXPECT_EQ(Runs("end-commit", "action"), 1);
  // After a business ROLLBACK nothing is there, so the retry runs the business code.
  EXPECT_TRUE(Deliver(*conn_, "saga", "end-rollback", "action", 0).ok());
  EXPECT_EQ(Runs("end-rollback", "action"), 1);
}

TEST_P(BarrierDbTest, InvalidTableNameFailsEveryOperation) {
  // (An empty name is tested on the adapters directly: here it would mean the default table.)
  for (const char* name : {"x; drop table account", "1abc", "a.b.c", "bad-name", "t'", "a..b"}) {
    auto c = backend_->Connect({.table = name});
    EXPECT_EQ(c->EnsureTable().code(), Code::kInvalidArgument) << name;
    BranchBarrier bb = MustBarrier("saga", "inv", "01", "action");
    EXPECT_EQ(c->Call(bb, [](Conn&) { return Status::Ok(); }).code(), Code::kInvalidArgument)
        << name;
    BranchBarrier check = MustBarrier("msg", "inv", "00", "msg");
    EXPECT_EQ(check.QueryPrepared(c->db()).code(), Code::kInvalidArgument) << name;
  }
  EXPECT_EQ(conn_->Int("select count(*) from " + account_), 1);
}

TEST_P(BarrierDbTest, MissingTableIsAnErrorNotASkip) {
  auto c = backend_->Connect({.table = GetParam() == "Postgres" ? backend_->Name("no_such_table")
                                                                : std::string("no_such_table")});
  BranchBarrier bb = MustBarrier("saga", "missing", "01", "action");
  bool ran = false;
  Status s = c->Call(bb, [&](Conn&) {
    ran = true;
    return Status::Ok();
  });
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(ran);
  EXPECT_FALSE(c->db().InTransaction());
  EXPECT_EQ(BarrierBranchResult(s).status, 500);
}

// Concurrent Try and Cancel of one branch, several deliveries of each, every one on its own
// connection: either both business codes ran (Try first) or neither did; never Try after Cancel.
// CleanBarrierTable deletes rows created before the horizon, in batches of batch_rows, at most
// max_batches per call, and never a newer row.
TEST_P(BarrierDbTest, CleanupDeletesOnlyOldRowsInBoundedBatches) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(Deliver(*conn_, "saga", "old-" + std::to_string(i), "action", 1).ok());
  }
  ASSERT_TRUE(Deliver(*conn_, "saga", "new-0", "action", 1).ok());
  const std::string past =
      GetParam() == "Postgres" ? "2020-01-01 00:00:00+00" : "2020-01-01T00:00:00.000Z";
  ASSERT_TRUE(conn_
                  ->Exec("update " + backend_->BarrierTable() + " set create_time = '" + past +
                         "' where gid like 'old-%'")
                  .ok());
  const std::string count = "select count(*) from " + backend_->BarrierTable();
  ASSERT_EQ(conn_->Int(count), 6);  // one row per delivery: the action's own

  auto clean = [&](int batch_rows, int max_batches) -> Result<int64_t> {
    BarrierCleanupOptions o;
    o.horizon = std::chrono::system_clock::now() - std::chrono::hours(1);
    o.batch_rows = batch_rows;
    o.max_batches = max_batches;
    o.pause = std::chrono::milliseconds(0);
    if (auto* sqlite = dynamic_cast<SqliteDb*>(&conn_->db())) return CleanBarrierTable(*sqlite, o);
    return CleanBarrierTable(dynamic_cast<PgDb&>(conn_->db()), o);
  };
  Result<int64_t> first = clean(2, 1);  // one batch of 2
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(*first, 2);
  EXPECT_EQ(conn_->Int(count), 4);
  Result<int64_t> rest = clean(2, 100);  // 2 + 1, then a short batch ends the call
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  EXPECT_EQ(*rest, 3);
  EXPECT_EQ(conn_->Int(count), 1);
  EXPECT_EQ(BarrierRows("new-0").size(), 1u) << "a row newer than the horizon is kept";
  // The kept row still guards its branch: a duplicate delivery does not run the business again.
  ASSERT_TRUE(Deliver(*conn_, "saga", "new-0", "action", 1).ok());
  EXPECT_EQ(Runs("new-0", "action"), 1);

  Result<int64_t> bad = clean(kMaxBarrierCleanupBatch + 1, 1);
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
}

TEST_P(BarrierDbTest, ConcurrentTryAndCancelAreConsistent) {
  constexpr int kIterations = 300;
  constexpr int kThreads = 6;  // even: Try, odd: Cancel
  std::vector<std::unique_ptr<Conn>> conns;
  for (int i = 0; i < kThreads; ++i) {
    conns.push_back(backend_->Connect());
    // Locking is what is under test, not durability: skip the fsyncs to keep the test short.
    ASSERT_TRUE(conns.back()
                    ->Exec(GetParam() == "Postgres" ? "set synchronous_commit = off"
                                                    : "pragma synchronous = off")
                    .ok());
  }
  std::barrier sync(kThreads + 1);
  std::mutex mu;
  std::vector<std::string> errors;
  auto record = [&](std::string e) {
    std::lock_guard lock(mu);
    if (errors.size() < 20) errors.push_back(std::move(e));
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 1u);
      const std::string op = t % 2 == 0 ? "try" : "cancel";
      Conn& conn = *conns[static_cast<size_t>(t)];
      for (int it = 0; it < kIterations; ++it) {
        sync.arrive_and_wait();
        const std::string gid = "race-" + std::to_string(it);
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 400));
        BranchBarrier bb = MustBarrier("tcc", gid, "01", op);
        Status s = conn.Call(bb, [&](Conn& c) -> Status {
          if (op == "try") {
            if (Status u = c.Exec("update " + account_ + " set frozen = frozen + 10 where id = 1");
                !u.ok()) {
              return u;
            }
          } else {
            Result<Rows> tried = c.Query("select count(*) from " + markers_ + " where gid = '" +
                                         gid + "' and op = 'try'");
            if (!tried.ok()) return tried.status();
            if ((*tried)[0][0] != "1") return Status::Internal(gid + ": cancel ran before try");
            if (Status u = c.Exec("update " + account_ + " set frozen = frozen - 10 where id = 1");
                !u.ok()) {
              return u;
            }
          }
          return c.Exec("insert into " + markers_ + "(gid, op) values('" + gid + "', '" + op +
                        "')");
        });
        if (!s.ok()) record(gid + " " + op + ": " + s.ToString());
        if (conn.db().InTransaction()) record(gid + " " + op + ": transaction left open");
        sync.arrive_and_wait();
      }
    });
  }

  int both = 0, neither = 0;
  for (int it = 0; it < kIterations; ++it) {
    sync.arrive_and_wait();  // start
    sync.arrive_and_wait();  // every delivery of this iteration returned
    const std::string gid = "race-" + std::to_string(it);
    Result<Rows> ran =
        conn_->Query("select op from " + markers_ + " where gid = '" + gid + "' order by id");
    if (!ran.ok()) {
      record(ran.status().ToString());
      continue;
    }
    if (ran->empty()) {
      ++neither;
    } else if (*ran == Rows{{"try"}, {"cancel"}}) {
      ++both;
    } else {
      std::string got;
      for (const auto& r : *ran) got += r[0] + " ";
      record(gid + ": business ran as [" + got + "]");
    }
    int64_t frozen = conn_->Int("select frozen from " + account_ + " where id = 1");
    if (frozen != 0) record(gid + ": frozen " + std::to_string(frozen));
  }
  for (auto& th : threads) th.join();
  for (const auto& e : errors) ADD_FAILURE() << e;
  EXPECT_EQ(both + neither, kIterations);
  std::cout << "[ concurrent ] " << GetParam() << ": both ran " << both << ", neither ran "
            << neither << " of " << kIterations << "\n";
  EXPECT_EQ(Balance(), 100);
}

INSTANTIATE_TEST_SUITE_P(Databases, BarrierDbTest,
                         ::testing::Values("SqliteWal", "SqliteRollbackJournal", "Postgres"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// ---------------------------------------------------------------------------------------------------
// Database-specific behaviour

TEST(SqliteBarrier, BusyTimeoutGivesRetryableTimeout) {
  SqliteBackend backend(/*wal=*/true);
  auto holder = backend.Connect();
  ASSERT_TRUE(holder->EnsureTable().ok());
  ASSERT_TRUE(holder->Exec("begin immediate").ok());  // another writer holds the write lock
  auto c = backend.Connect({.timeout = 100ms});
  BranchBarrier bb = MustBarrier("saga", "busy", "01", "action");
  auto start = std::chrono::steady_clock::now();
  Status s = c->Call(bb, [](Conn&) { return Status::Ok(); });
  EXPECT_EQ(s.code(), Code::kTimeout) << s.ToString();
  EXPECT_TRUE(s.retryable());
  EXPECT_GE(std::chrono::steady_clock::now() - start, 90ms);
  EXPECT_FALSE(c->db().InTransaction());
  ASSERT_TRUE(holder->Exec("rollback").ok());
  BranchBarrier retry = MustBarrier("saga", "busy", "01", "action");
  EXPECT_TRUE(c->Call(retry, [](Conn&) { return Status::Ok(); }).ok());
}

TEST(SqliteBarrier, EmptyOrQualifiedTableNameIsInvalid) {
  SqliteBackend backend(/*wal=*/false);
  auto c = backend.Connect();
  auto* raw = static_cast<SqliteConn*>(c.get())->raw();
  for (const std::string& name :
       {std::string(), std::string("main.dtm_barrier"), std::string(64, 't')}) {
    SqliteDb db(raw, {.table = name});
    EXPECT_EQ(db.EnsureTable().code(), Code::kInvalidArgument) << name;
    EXPECT_EQ(db.Begin().code(), Code::kInvalidArgument) << name;
    EXPECT_FALSE(db.InTransaction());
  }
  SqliteDb ok(raw, {.table = std::string(63, 't')});
  EXPECT_TRUE(ok.EnsureTable().ok());
}

TEST(SqliteBarrier, CustomTableGetsItsOwnIndex) {
  SqliteBackend backend(/*wal=*/false);
  auto a = backend.Connect({.table = "orders_barrier"});
  auto b = backend.Connect();  // the default table in the same file
  ASSERT_TRUE(a->EnsureTable().ok());
  ASSERT_TRUE(b->EnsureTable().ok());
  EXPECT_EQ(a->One("select count(*) from sqlite_master where type = 'index' and name = "
                   "'uniq_orders_barrier' and tbl_name = 'orders_barrier'"),
            "1");
  EXPECT_EQ(a->One("select count(*) from sqlite_master where type = 'index' and name = "
                   "'uniq_barrier' and tbl_name = 'dtm_barrier'"),
            "1");
  BranchBarrier bb = MustBarrier("saga", "c1", "01", "action");
  EXPECT_TRUE(a->Call(bb, [](Conn&) { return Status::Ok(); }).ok());
  EXPECT_EQ(a->Int("select count(*) from orders_barrier"), 1);
  EXPECT_EQ(a->Int("select count(*) from dtm_barrier"), 0);
  // §4.1's columns, defaults included.
  EXPECT_EQ(
      a->One(
          "select count(*) from orders_barrier where create_time like '____-__-__T__:__:__.___Z'"),
      "1");
}

TEST(SqliteBarrier, DefaultTableLayoutIsSection41) {
  SqliteBackend backend(/*wal=*/false);
  auto c = backend.Connect();
  ASSERT_TRUE(c->EnsureTable().ok());
  Result<Rows> cols = c->Query(
      "select name, type, \"notnull\", dflt_value, pk from "
      "pragma_table_info('dtm_barrier') order by cid");
  ASSERT_TRUE(cols.ok()) << cols.status().ToString();
  const Rows want = {
      {"id", "INTEGER", "0", "NULL", "1"},
      {"trans_type", "TEXT", "1", "''", "0"},
      {"gid", "TEXT", "1", "''", "0"},
      {"branch_id", "TEXT", "1", "''", "0"},
      {"op", "TEXT", "1", "''", "0"},
      {"barrier_id", "TEXT", "1", "''", "0"},
      {"reason", "TEXT", "1", "''", "0"},
      {"create_time", "TEXT", "1", "strftime('%Y-%m-%dT%H:%M:%fZ','now')", "0"},
      {"update_time", "TEXT", "1", "strftime('%Y-%m-%dT%H:%M:%fZ','now')", "0"},
  };
  EXPECT_EQ(*cols, want);
  EXPECT_EQ(c->One("select group_concat(name, ',') from pragma_index_info('uniq_barrier')"),
            "gid,branch_id,op,barrier_id");
  EXPECT_EQ(c->One("select \"unique\" from pragma_index_list('dtm_barrier') where name = "
                   "'uniq_barrier'"),
            "1");
}

class PgBarrier : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* url = PgUrl();
    if (url == nullptr) GTEST_SKIP() << kNoPgMessage;
    backend_ = std::make_unique<PgBackend>(url);
    conn_ = backend_->Connect();
    ASSERT_TRUE(conn_->EnsureTable().ok());
  }
  std::unique_ptr<PgBackend> backend_;
  std::unique_ptr<Conn> conn_;
};

TEST_F(PgBarrier, TableLayoutIsSection41) {
  const std::string& schema = backend_->schema();
  Result<Rows> cols = conn_->Query(
      "select column_name, data_type, coalesce(character_maximum_length::text, ''), "
      "coalesce(column_default, '') from information_schema.columns where table_schema = '" +
      schema + "' and table_name = 'barrier' order by ordinal_position");
  ASSERT_TRUE(cols.ok()) << cols.status().ToString();
  const Rows want = {
      {"id", "bigint", "", "nextval('" + schema + ".barrier_seq'::regclass)"},
      {"trans_type", "character varying", "45", "''::character varying"},
      {"gid", "character varying", "128", "''::character varying"},
      {"branch_id", "character varying", "128", "''::character varying"},
      {"op", "character varying", "45", "''::character varying"},
      {"barrier_id", "character varying", "45", "''::character varying"},
      {"reason", "character varying", "45", "''::character varying"},
      {"create_time", "timestamp with time zone", "", "now()"},
      {"update_time", "timestamp with time zone", "", "now()"},
  };
  EXPECT_EQ(*cols, want);
  EXPECT_EQ(conn_->One("select pg_get_constraintdef(c.oid) from pg_constraint c join pg_namespace "
                       "n on n.oid = c.connamespace where n.nspname = '" +
                       schema + "' and c.conname = 'uniq_barrier'"),
            "UNIQUE (gid, branch_id, op, barrier_id)");
  EXPECT_EQ(conn_->One("select pg_get_constraintdef(c.oid) from pg_constraint c join pg_namespace "
                       "n on n.oid = c.connamespace where n.nspname = '" +
                       schema + "' and c.contype = 'p'"),
            "PRIMARY KEY (id)");
  EXPECT_EQ(conn_->One("select datetime_precision from information_schema.columns where "
                       "table_schema = '" +
                       schema + "' and column_name = 'create_time'"),
            "0");
}

TEST_F(PgBarrier, StatementErrorInBusinessIsNeverCommitted) {
  BranchBarrier bb = MustBarrier("saga", "sqlerr", "01", "action");
  Status s = conn_->Call(bb, [](Conn& c) {
    Status bad = c.Exec("select * from no_such_table_at_all");
    EXPECT_FALSE(bad.ok());
    return Status::Ok();  // a buggy handler ignoring the error
  });
  EXPECT_EQ(s.code(), Code::kInternal) << s.ToString();
  EXPECT_FALSE(conn_->db().InTransaction());
  EXPECT_EQ(conn_->Int("select count(*) from " + backend_->BarrierTable()), 0);
}

TEST_F(PgBarrier, LockTimeoutGivesRetryableTimeout) {
  auto holder = backend_->Connect();
  ASSERT_TRUE(holder->db().Begin().ok());  // an open transaction holding the key
  Result<int> held = holder->db().InsertIgnore({"saga", "lock", "01", "action", "01", "action"});
  ASSERT_TRUE(held.ok());
  ASSERT_EQ(*held, 1);
  auto c = backend_->Connect({.timeout = 150ms});
  BranchBarrier bb = MustBarrier("saga", "lock", "01", "action");
  Status s = c->Call(bb, [](Conn&) { return Status::Ok(); });
  EXPECT_EQ(s.code(), Code::kTimeout) << s.ToString();
  EXPECT_TRUE(s.retryable());
  EXPECT_FALSE(c->db().InTransaction());
  // The check-back insert outside a transaction is bounded the same way.
  ASSERT_TRUE(holder->db().InsertIgnore({"msg", "lockmsg", "00", "msg", "01", "msg"}).ok());
  BranchBarrier check = MustBarrier("msg", "lockmsg", "00", "msg");
  EXPECT_EQ(check.QueryPrepared(c->db()).code(), Code::kTimeout);
  EXPECT_FALSE(c->db().InTransaction());
  holder->db().Rollback();
  BranchBarrier retry = MustBarrier("saga", "lock", "01", "action");
  EXPECT_TRUE(c->Call(retry, [](Conn&) { return Status::Ok(); }).ok());
  EXPECT_EQ(check.QueryPrepared(c->db()).code(), Code::kConflict);
}

TEST_F(PgBarrier, LostConnectionIsUnavailable) {
  PgConn victim(backend_->url(), {}, backend_->BarrierTable());
  int pid = PQbackendPID(victim.raw());
  ASSERT_TRUE(conn_->Exec("select pg_terminate_backend(" + std::to_string(pid) + ")").ok());
  std::this_thread::sleep_for(100ms);
  BranchBarrier bb = MustBarrier("saga", "lost", "01", "action");
  Status s = victim.Call(bb, [](Conn&) { return Status::Ok(); });
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  EXPECT_TRUE(s.retryable());
}

TEST_F(PgBarrier, EmptyOrLongTableNameIsInvalid) {
  auto* raw = static_cast<PgConn*>(conn_.get())->raw();
  const std::string long_part(60, 't');
  for (const std::string& name : {std::string(), std::string("s."), std::string(".t"), long_part,
                                  "s." + long_part, long_part + ".t"}) {
    PgDb db(raw, {.table = name});
    EXPECT_EQ(db.EnsureTable().code(), Code::kInvalidArgument) << name;
    EXPECT_EQ(db.Begin().code(), Code::kInvalidArgument) << name;
    EXPECT_FALSE(db.InTransaction());
  }
}

TEST_F(PgBarrier, UnqualifiedTableUsesSearchPath) {
  // Another schema: the constraint name uniq_barrier is taken in the test's schema (one barrier
  // table per schema).
  const std::string other = backend_->schema() + "_sp";
  ASSERT_TRUE(conn_->Exec("create schema " + other).ok());
  {
    auto c = backend_->Connect({.table = "plain_barrier"});
    ASSERT_TRUE(c->Exec("set search_path to " + other).ok());
    Status s = c->EnsureTable();
    EXPECT_TRUE(s.ok()) << s.ToString();
    BranchBarrier bb = MustBarrier("saga", "sp", "01", "action");
    EXPECT_TRUE(c->Call(bb, [](Conn&) { return Status::Ok(); }).ok());
    EXPECT_EQ(conn_->Int("select count(*) from " + other + ".plain_barrier"), 1);
  }
  // A second barrier table in a schema that has one already is refused, not silently broken.
  auto same_schema = backend_->Connect({.table = backend_->Name("second_barrier")});
  EXPECT_FALSE(same_schema->EnsureTable().ok());
  EXPECT_FALSE(same_schema->db().InTransaction());
  EXPECT_TRUE(conn_->Exec("drop schema " + other + " cascade").ok());
}

}  // namespace
}  // namespace dtx
