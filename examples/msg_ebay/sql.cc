#include "examples/msg_ebay/sql.h"

#include <libpq-fe.h>
#include <sqlite3.h>

#include <cstdlib>
#include <utility>

#include "dtx/barrier_pg.h"

namespace msg_examples {
namespace {

// ---------------------------------------------------------------------------------------------------
// SQLite

class SqliteConn final : public SqlConn {
 public:
  explicit SqliteConn(sqlite3* db) : db_(db), barrier_(db) {}
  ~SqliteConn() override { sqlite3_close(db_); }

  std::string_view kind() const override { return "sqlite"; }

  Result<std::vector<Row>> Query(const std::string& sql,
                                 const std::vector<std::string>& params) override {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &raw, nullptr);
    if (rc != SQLITE_OK) return Error(rc, "prepare '" + sql + "'");
    struct Finalize {
      sqlite3_stmt* s;
      ~Finalize() { sqlite3_finalize(s); }
    } finalize{raw};
    for (size_t i = 0; i < params.size(); ++i) {
      rc = sqlite3_bind_text(raw, static_cast<int>(i + 1), params[i].data(),
                             static_cast<int>(params[i].size()), SQLITE_TRANSIENT);
      if (rc != SQLITE_OK) return Error(rc, "bind");
    }
    std::vector<Row> rows;
    for (;;) {
      rc = sqlite3_step(raw);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return Error(rc, "'" + sql + "'");
      Row row;
      const int n = sqlite3_column_count(raw);
      for (int c = 0; c < n; ++c) {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(raw, c));
        row.emplace_back(text ? text : "", static_cast<size_t>(sqlite3_column_bytes(raw, c)));
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  Result<int64_t> Exec(const std::string& sql, const std::vector<std::string>& params) override {
    auto r = Query(sql, params);
    if (!r.ok()) return r.status();
    return static_cast<int64_t>(sqlite3_changes64(db_));
  }

  Status Script(const std::string& sql) override {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      return Status::IoError(msg);
    }
    return Status::Ok();
  }

  Status Begin() override { return Script("BEGIN IMMEDIATE"); }
  Status Commit() override {
    Status s = Script("COMMIT");
    if (!s.ok()) Rollback();
    return s;
  }
  void Rollback() override {
    if (sqlite3_get_autocommit(db_) == 0) (void)Script("ROLLBACK");
  }
  dtx::BarrierDb& barrier() override { return barrier_; }
  Status EnsureBarrierTable() override { return barrier_.EnsureTable(); }
  std::string barrier_table() const override { return barrier_.table(); }
  bool healthy() const override { return true; }

 private:
  Status Error(int rc, const std::string& what) const {
    std::string msg = what + ": " + sqlite3_errmsg(db_);
    switch (rc & 0xFF) {
      case SQLITE_CONSTRAINT:
        return Status::Conflict(msg);
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
        return Status::Timeout(msg);
      default:
        return Status::IoError(msg);
    }
  }

  sqlite3* db_;
  dtx::SqliteDb barrier_;  // installs the 10 s busy timeout on the connection
};

Result<std::unique_ptr<SqlConn>> OpenSqlite(const std::string& path) {
  auto raw = dtx_examples::OpenSqliteFile(path);
  if (!raw.ok()) return raw.status();
  auto conn = std::make_unique<SqliteConn>(*raw);
  // WAL + FULL: a committed write survives a crash of the process or the machine.
  if (Status s = conn->Script("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"); !s.ok()) {
    return s;
  }
  return std::unique_ptr<SqlConn>(std::move(conn));
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL

using dtx_examples::PgResult;

dtx::PgBarrierOptions BarrierOptions(const std::string& schema) {
  dtx::PgBarrierOptions o;
  o.table = schema + ".barrier";
  return o;
}

class PgConn final : public SqlConn {
 public:
  PgConn(PGconn* conn, std::string schema)
      : conn_(conn), schema_(std::move(schema)), barrier_(conn, BarrierOptions(schema_)) {}
  ~PgConn() override { PQfinish(conn_); }

  std::string_view kind() const override { return "postgres"; }

  Result<std::vector<Row>> Query(const std::string& sql,
                                 const std::vector<std::string>& params) override {
    auto res = Run(sql, params);
    if (!res.ok()) return res.status();
    PGresult* r = res->get();
    std::vector<Row> rows;
    for (int i = 0; i < PQntuples(r); ++i) {
      Row row;
      for (int c = 0; c < PQnfields(r); ++c) {
        row.emplace_back(PQgetisnull(r, i, c) ? "" : PQgetvalue(r, i, c));
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  Result<int64_t> Exec(const std::string& sql, const std::vector<std::string>& params) override {
    auto res = Run(sql, params);
    if (!res.ok()) return res.status();
    const char* tuples = PQcmdTuples(res->get());
    return static_cast<int64_t>(tuples != nullptr && *tuples ? std::strtoll(tuples, nullptr, 10)
                                                             : 0);
  }

  Status Script(const std::string& sql) override {
    PgResult res(PQexec(conn_, sql.c_str()));
    if (!res || (PQresultStatus(res.get()) != PGRES_COMMAND_OK &&
                 PQresultStatus(res.get()) != PGRES_TUPLES_OK)) {
      return Error(res.get(), "script");
    }
    return Status::Ok();
  }

  Status Begin() override { return Script("BEGIN"); }
  Status Commit() override {
    // COMMIT of a failed transaction answers ROLLBACK without an error: check the outcome.
    PgResult res(PQexec(conn_, "COMMIT"));
    if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) return Error(res.get(), "commit");
    if (std::string_view(PQcmdStatus(res.get())) != "COMMIT") {
      return Status::Internal("commit: the transaction had failed and was rolled back");
    }
    return Status::Ok();
  }
  void Rollback() override {
    if (PQtransactionStatus(conn_) != PQTRANS_IDLE) PQclear(PQexec(conn_, "ROLLBACK"));
  }
  dtx::BarrierDb& barrier() override { return barrier_; }
  Status EnsureBarrierTable() override { return barrier_.EnsureTable(); }
  std::string barrier_table() const override { return barrier_.table(); }
  bool healthy() const override { return PQstatus(conn_) == CONNECTION_OK; }

 private:
  Result<PgResult> Run(const std::string& sql, const std::vector<std::string>& params) {
    std::vector<const char*> values(params.size(), nullptr);
    for (size_t i = 0; i < params.size(); ++i) values[i] = params[i].c_str();
    PgResult res(PQexecParams(conn_, dtx_examples::PgNumbered(sql).c_str(),
                              static_cast<int>(params.size()), nullptr, values.data(), nullptr,
                              nullptr, 0));
    if (!res || (PQresultStatus(res.get()) != PGRES_COMMAND_OK &&
                 PQresultStatus(res.get()) != PGRES_TUPLES_OK)) {
      return Error(res.get(), "'" + sql + "'");
    }
    return res;
  }

  Status Error(const PGresult* res, const std::string& what) const {
    return dtx_examples::PgError(conn_, res, what, true);
  }

  PGconn* conn_;
  std::string schema_;
  dtx::PgDb barrier_;
};

}  // namespace

Status SqlConn::InTransaction(const std::function<Status()>& body) {
  if (Status s = Begin(); !s.ok()) return s;
  Status s;
  try {
    s = body();
  } catch (...) {
    Rollback();
    throw;
  }
  if (!s.ok()) {
    Rollback();
    return s;
  }
  return Commit();
}

Result<std::unique_ptr<SqlConn>> OpenSql(const std::string& url, const std::string& pg_schema) {
  if (url.starts_with("sqlite:")) return OpenSqlite(url.substr(7));
  if (!IsPostgresUrl(url)) {
    return Status::InvalidArgument("database URL '" + url +
                                   "': use sqlite:/path/file.db or postgres://...");
  }
  if (!dtx_examples::IsPgIdentifier(pg_schema)) {
    return Status::InvalidArgument("PostgreSQL schema '" + pg_schema +
                                   "' is not a plain identifier");
  }
  auto raw = dtx_examples::ConnectPg(url);
  if (!raw.ok()) return raw.status();
  auto pg = std::make_unique<PgConn>(*raw, pg_schema);
  if (Status s = pg->Script("SET client_min_messages = warning; SET search_path TO " + pg_schema);
      !s.ok()) {
    return s;
  }
  return std::unique_ptr<SqlConn>(std::move(pg));
}

Status CreatePgSchema(const std::string& url, const std::string& pg_schema, bool drop_first) {
  if (!IsPostgresUrl(url)) return Status::Ok();
  auto conn = OpenSql(url, pg_schema);
  if (!conn.ok()) return conn.status();
  std::string script;
  if (drop_first) script += "DROP SCHEMA IF EXISTS " + pg_schema + " CASCADE; ";
  script += "CREATE SCHEMA IF NOT EXISTS " + pg_schema;
  return (*conn)->Script(script);
}

// ---------------------------------------------------------------------------------------------------
// ConnPool

ConnPool::ConnPool(std::string url, std::string pg_schema, size_t max_connections)
    : dtx_examples::ConnPool<SqlConn>(OpenSql, std::move(url), std::move(pg_schema),
                                      max_connections,
                                      // never hand out a connection inside a transaction
                                      [](SqlConn& conn) { conn.Rollback(); }) {}

}  // namespace msg_examples
