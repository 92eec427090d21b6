#include "examples/tcc_payment/sql_conn.h"

#include <libpq-fe.h>
#include <sqlite3.h>

#include <cstring>
#include <utility>

#include "dtx/barrier_pg.h"

namespace tcc_payment {
namespace {

// ---------------------------------------------------------------------------------------------------
// SQLite

class SqliteConn final : public SqlConn {
 public:
  explicit SqliteConn(sqlite3* db) : db_(db) {}
  ~SqliteConn() override { sqlite3_close(db_); }

  std::string_view kind() const override { return "sqlite"; }

  Result<std::vector<Row>> Query(const std::string& sql,
                                 const std::vector<Value>& params) override {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &raw, nullptr);
    if (rc != SQLITE_OK) return Error(rc, "prepare '" + sql + "'");
    struct Finalize {
      sqlite3_stmt* s;
      ~Finalize() { sqlite3_finalize(s); }
    } finalize{raw};
    for (size_t i = 0; i < params.size(); ++i) {
      const int index = static_cast<int>(i + 1);
      if (const auto* n = std::get_if<int64_t>(&params[i])) {
        rc = sqlite3_bind_int64(raw, index, *n);
      } else if (const auto* s = std::get_if<std::string>(&params[i])) {
        rc =
            sqlite3_bind_text(raw, index, s->data(), static_cast<int>(s->size()), SQLITE_TRANSIENT);
      } else {
        rc = sqlite3_bind_null(raw, index);
      }
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
        switch (sqlite3_column_type(raw, c)) {
          case SQLITE_INTEGER:
            row.emplace_back(static_cast<int64_t>(sqlite3_column_int64(raw, c)));
            break;
          case SQLITE_NULL:
            row.emplace_back(nullptr);
            break;
          default: {
            const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(raw, c));
            row.emplace_back(
                std::string(text ? text : "", static_cast<size_t>(sqlite3_column_bytes(raw, c))));
          }
        }
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  Result<int64_t> Exec(const std::string& sql, const std::vector<Value>& params) override {
    auto r = Query(sql, params);
    if (!r.ok()) return r.status();
    return static_cast<int64_t>(sqlite3_changes64(db_));
  }

  Status ExecScript(const std::string& sql) override {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      return Status::IoError(msg);
    }
    return Status::Ok();
  }

  Status CallBarrier(dtx::BranchBarrier& barrier,
                     const std::function<Status(SqlConn&)>& business) override {
    dtx::SqliteDb db(db_);
    return barrier.Call(db, [&](dtx::SqliteTx&) { return business(*this); });
  }

  Status EnsureBarrierTable() override {
    dtx::SqliteDb db(db_);
    return db.EnsureTable();
  }
  std::string barrier_table() const override { return "dtm_barrier"; }
  bool healthy() const override { return true; }

 private:
  Status Error(int rc, const std::string& what) const {
    std::string msg = what + ": " + sqlite3_errmsg(db_);
    if ((rc & 0xFF) == SQLITE_BUSY || (rc & 0xFF) == SQLITE_LOCKED) return Status::Timeout(msg);
    return Status::IoError(msg);
  }

  sqlite3* db_;
};

Result<std::unique_ptr<SqlConn>> OpenSqlite(const std::string& path) {
  auto raw = dtx_examples::OpenSqliteFile(path);
  if (!raw.ok()) return raw.status();
  auto conn = std::make_unique<SqliteConn>(*raw);
  sqlite3_busy_timeout(*raw, 10'000);
  // WAL + FULL: a committed write survives a crash of the process or the machine.
  if (Status s = conn->ExecScript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"); !s.ok()) {
    return s;
  }
  return std::unique_ptr<SqlConn>(std::move(conn));
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL

using dtx_examples::PgResult;

class PgConn final : public SqlConn {
 public:
  PgConn(PGconn* conn, std::string schema) : conn_(conn), schema_(std::move(schema)) {}
  ~PgConn() override { PQfinish(conn_); }

  std::string_view kind() const override { return "postgres"; }

  Result<std::vector<Row>> Query(const std::string& sql,
                                 const std::vector<Value>& params) override {
    auto res = Run(sql, params);
    if (!res.ok()) return res.status();
    PGresult* r = res->get();
    std::vector<Row> rows;
    const int nrows = PQntuples(r);
    const int ncols = PQnfields(r);
    for (int i = 0; i < nrows; ++i) {
      Row row;
      for (int c = 0; c < ncols; ++c) {
        if (PQgetisnull(r, i, c)) {
          row.emplace_back(nullptr);
          continue;
        }
        const char* text = PQgetvalue(r, i, c);
        const Oid type = PQftype(r, c);
        if (type == 20 || type == 21 || type == 23) {  // int8, int2, int4
          row.emplace_back(static_cast<int64_t>(std::strtoll(text, nullptr, 10)));
        } else {
          row.emplace_back(std::string(text, static_cast<size_t>(PQgetlength(r, i, c))));
        }
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  Result<int64_t> Exec(const std::string& sql, const std::vector<Value>& params) override {
    auto res = Run(sql, params);
    if (!res.ok()) return res.status();
    const char* tuples = PQcmdTuples(res->get());
    return static_cast<int64_t>(tuples != nullptr && *tuples ? std::strtoll(tuples, nullptr, 10)
                                                             : 0);
  }

  Status ExecScript(const std::string& sql) override {
    PgResult res(PQexec(conn_, sql.c_str()));
    if (!res || (PQresultStatus(res.get()) != PGRES_COMMAND_OK &&
                 PQresultStatus(res.get()) != PGRES_TUPLES_OK)) {
      return Error(res.get(), "script");
    }
    return Status::Ok();
  }

  Status CallBarrier(dtx::BranchBarrier& barrier,
                     const std::function<Status(SqlConn&)>& business) override {
    dtx::PgDb db(conn_, Options());
    return barrier.Call(db, [&](dtx::PgTx&) { return business(*this); });
  }

  Status EnsureBarrierTable() override {
    dtx::PgDb db(conn_, Options());
    return db.EnsureTable();
  }
  std::string barrier_table() const override { return schema_ + ".barrier"; }
  bool healthy() const override { return PQstatus(conn_) == CONNECTION_OK; }

 private:
  dtx::PgBarrierOptions Options() const {
    dtx::PgBarrierOptions o;
    o.table = barrier_table();
    return o;
  }

  Result<PgResult> Run(const std::string& sql, const std::vector<Value>& params) {
    std::vector<std::string> text(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    for (size_t i = 0; i < params.size(); ++i) {
      if (const auto* n = std::get_if<int64_t>(&params[i])) {
        text[i] = std::to_string(*n);
        values[i] = text[i].c_str();
      } else if (const auto* s = std::get_if<std::string>(&params[i])) {
        values[i] = s->c_str();
      }
    }
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
    return dtx_examples::PgError(conn_, res, what, false);
  }

  PGconn* conn_;
  std::string schema_;
};

}  // namespace

int64_t AsInt(const Value& v) {
  const int64_t* i = std::get_if<int64_t>(&v);
  return i ? *i : 0;
}

std::string AsText(const Value& v) {
  const std::string* s = std::get_if<std::string>(&v);
  return s ? *s : std::string();
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
  auto conn = dtx_examples::ConnectPg(url);
  if (!conn.ok()) return conn.status();
  auto pg = std::make_unique<PgConn>(*conn, pg_schema);
  if (Status s = pg->ExecScript("SET search_path TO " + pg_schema); !s.ok()) return s;
  return std::unique_ptr<SqlConn>(std::move(pg));
}

Status CreatePgSchema(const std::string& url, const std::string& pg_schema, bool drop_first) {
  if (!IsPostgresUrl(url)) return Status::Ok();
  auto conn = OpenSql(url, pg_schema);
  if (!conn.ok()) return conn.status();
  std::string script;
  if (drop_first) script += "DROP SCHEMA IF EXISTS " + pg_schema + " CASCADE; ";
  script += "CREATE SCHEMA IF NOT EXISTS " + pg_schema;
  return (*conn)->ExecScript(script);
}

// ---------------------------------------------------------------------------------------------------
// ConnPool

ConnPool::ConnPool(std::string url, std::string pg_schema, size_t max_connections)
    : dtx_examples::ConnPool<SqlConn>(OpenSql, std::move(url), std::move(pg_schema),
                                      max_connections) {}

}  // namespace tcc_payment
