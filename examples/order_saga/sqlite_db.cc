#include "examples/order_saga/sqlite_db.h"

#include <sqlite3.h>

namespace order_saga {

int64_t AsInt(const Value& v) {
  const int64_t* i = std::get_if<int64_t>(&v);
  return i ? *i : 0;
}

std::string AsText(const Value& v) {
  const std::string* s = std::get_if<std::string>(&v);
  return s ? *s : std::string();
}

Result<std::unique_ptr<Db>> Db::Open(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    sqlite3_close(raw);
    return Status::IoError("open " + path + ": " + msg);
  }
  std::unique_ptr<Db> db(new Db(raw));
  sqlite3_busy_timeout(raw, 5000);
  // WAL + FULL: a committed write survives a crash of the process or the machine.
  if (Status s = db->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"); !s.ok()) return s;
  return db;
}

Db::~Db() { sqlite3_close(db_); }

Status Db::Error(const std::string& what) const {
  return Status::IoError(what + ": " + sqlite3_errmsg(db_));
}

Status Db::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return Status::IoError(msg + " (in: " + sql + ")");
  }
  return Status::Ok();
}

Result<std::vector<Row>> Db::Query(const std::string& sql, const std::vector<Value>& params) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    return Error("prepare '" + sql + "'");
  }
  struct Finalize {
    sqlite3_stmt* s;
    ~Finalize() { sqlite3_finalize(s); }
  } finalize{stmt};
  for (size_t i = 0; i < params.size(); ++i) {
    const int index = static_cast<int>(i + 1);
    int rc = SQLITE_OK;
    if (const auto* n = std::get_if<int64_t>(&params[i])) {
      rc = sqlite3_bind_int64(stmt, index, *n);
    } else if (const auto* s = std::get_if<std::string>(&params[i])) {
      rc = sqlite3_bind_text(stmt, index, s->data(), static_cast<int>(s->size()), SQLITE_TRANSIENT);
    } else {
      rc = sqlite3_bind_null(stmt, index);
    }
    if (rc != SQLITE_OK) return Error("bind");
  }
  std::vector<Row> rows;
  for (;;) {
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return Error("step '" + sql + "'");
    Row row;
    const int n = sqlite3_column_count(stmt);
    for (int c = 0; c < n; ++c) {
      switch (sqlite3_column_type(stmt, c)) {
        case SQLITE_INTEGER:
          row.emplace_back(static_cast<int64_t>(sqlite3_column_int64(stmt, c)));
          break;
        case SQLITE_NULL:
          row.emplace_back(nullptr);
          break;
        default: {
          const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
          row.emplace_back(
              std::string(text ? text : "", static_cast<size_t>(sqlite3_column_bytes(stmt, c))));
        }
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

int64_t Db::Changes() const { return sqlite3_changes64(db_); }

Transaction::Transaction(Db& db) : db_(db) {
  begin_ = db_.Exec("BEGIN IMMEDIATE");
  open_ = begin_.ok();
}

Transaction::~Transaction() {
  if (open_) (void)db_.Exec("ROLLBACK");
}

Status Transaction::Commit() {
  if (!open_) return begin_.ok() ? Status::Internal("transaction already finished") : begin_;
  Status s = db_.Exec("COMMIT");
  if (s.ok()) open_ = false;
  return s;
}

}  // namespace order_saga
