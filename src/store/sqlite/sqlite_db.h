// Thin RAII over the SQLite C API and the row decoders shared by the SQLite store's connections
// (internal to src/store/sqlite).
#pragma once

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/model.h"
#include "dtx/assert.h"
#include "dtx/status.h"
#include "store/store.h"

namespace dtx::store::sqlite_internal {

inline constexpr const char* kGlobalColumns =
    "id, gid, trans_type, status, protocol, query_prepared, custom_data, rollback_reason, result, "
    "owner, options, create_time, update_time, finish_time, rollback_time, next_cron_interval, "
    "next_cron_time, retry_count, lease_until";
inline constexpr const char* kBranchColumns =
    "id, gid, url, bin_data, branch_id, op, status, create_time, update_time, finish_time, "
    "attempts, "
    "last_error";
inline constexpr const char* kKvColumns = "id, cat, k, v, version, create_time, update_time";

// ---------------------------------------------------------------------------------------------------
// Thin RAII over the C API.

inline bool IsBusy(int rc) {
  int primary = rc & 0xff;
  return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

inline bool IsUniqueViolation(int rc) {
  return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY;
}

// A failed SQLite call as a Status: kUnavailable if the database is locked (retryable), else
// kIoError.
Status SqlError(sqlite3* db, int rc, std::string_view what);

class Db {
 public:
  Db() = default;
  explicit Db(sqlite3* db) : db_(db) {}
  Db(Db&& o) noexcept : db_(std::exchange(o.db_, nullptr)) {}
  Db& operator=(Db&& o) noexcept {
    std::swap(db_, o.db_);
    return *this;
  }
  ~Db() {
    if (db_ != nullptr) {
      int rc = sqlite3_close(db_);
      if (rc != SQLITE_OK) spdlog::error("sqlite3_close: {}", sqlite3_errstr(rc));
    }
  }
  sqlite3* get() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

class Stmt {
 public:
  Stmt() = default;
  Stmt(Stmt&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stmt& operator=(Stmt&& o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~Stmt() { sqlite3_finalize(s_); }
  sqlite3_stmt* get() const { return s_; }

  // Prepared once per connection and kept (SQLITE_PREPARE_PERSISTENT).
  static Status Prepare(sqlite3* db, std::string_view sql, Stmt* out) {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(s);
      return SqlError(db, rc, "prepare '" + std::string(sql.substr(0, 60)) + "'");
    }
    *out = Stmt();
    out->s_ = s;
    return Status::Ok();
  }

 private:
  sqlite3_stmt* s_ = nullptr;
};

// One use of a cached statement: binds, steps, reads columns; resets and clears the bindings when
// it goes out of scope (so an unbound parameter is NULL next time).
class Use {
 public:
  explicit Use(const Stmt& s) : s_(s.get()) {}
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;
  ~Use() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }

  Use& Int(int i, int64_t v) {
    Check(sqlite3_bind_int64(s_, i, v));
    return *this;
  }
  Use& Text(int i, std::string_view v) {
    Check(sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    return *this;
  }
  Use& Blob(int i, std::string_view v) {
    // A zero-length blob with a null pointer would bind NULL; bind an empty blob explicitly.
    Check(v.empty() ? sqlite3_bind_zeroblob(s_, i, 0)
                    : sqlite3_bind_blob64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT));
    return *this;
  }
  Use& OptInt(int i, const std::optional<int64_t>& v) { return v ? Int(i, *v) : *this; }
  Use& OptText(int i, const std::optional<std::string>& v) { return v ? Text(i, *v) : *this; }
  Use& Named(const char* name, int64_t v) { return Int(Index(name), v); }
  Use& Named(const char* name, std::string_view v) { return Text(Index(name), v); }

  // SQLITE_ROW, SQLITE_DONE or an error code (a failed bind is reported here).
  int Step() {
    if (bind_rc_ != SQLITE_OK) return bind_rc_;
    return sqlite3_step(s_);
  }

  int64_t ColInt(int i) const { return sqlite3_column_int64(s_, i); }
  std::string ColText(int i) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
    int n = sqlite3_column_bytes(s_, i);
    return p == nullptr ? std::string() : std::string(p, static_cast<size_t>(n));
  }
  std::string ColBlob(int i) const {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(s_, i));
    int n = sqlite3_column_bytes(s_, i);
    return p == nullptr ? std::string() : std::string(p, static_cast<size_t>(n));
  }

 private:
  int Index(const char* name) {
    int i = sqlite3_bind_parameter_index(s_, name);
    DTX_INVARIANT(i > 0, "unknown SQL parameter name");
    return i;
  }
  void Check(int rc) {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3_stmt* s_;
  int bind_rc_ = SQLITE_OK;
};

Status Exec(sqlite3* db, const std::string& sql);

// Runs a statement that returns one integer row (a PRAGMA or a count).
Result<int64_t> QueryInt(sqlite3* db, const std::string& sql);

Result<Db> OpenDb(const std::string& path, int flags, int busy_timeout_ms);

// ---------------------------------------------------------------------------------------------------
// Row decoding (columns in the order of kGlobalColumns / kBranchColumns / kKvColumns).

// A stored value that does not decode (kCorrupt).
Status Corrupt(const std::string& what);

Result<core::GlobalTrans> ReadGlobal(const Use& q);
Result<core::BranchRow> ReadBranch(const Use& q);
KvRow ReadKv(const Use& q);

}  // namespace dtx::store::sqlite_internal
