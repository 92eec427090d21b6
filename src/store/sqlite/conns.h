// The SQLite store's two kinds of connection (internal to src/store/sqlite). WriterConn is the
// only read-write connection, used by the writer thread (schema.cc: open-time schema checks and
// migrations; writer.cc: the write operations); ReaderConn is a read-only connection per reader
// thread (reader.cc).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "store/sqlite/keys.h"
#include "store/sqlite/sqlite_db.h"
#include "store/store.h"

namespace dtx::store::sqlite_internal {

// ---------------------------------------------------------------------------------------------------
// The writer's connection and its operations. Used by one thread at a time (open, then the writer).

class WriterConn {
 public:
  static Result<std::unique_ptr<WriterConn>> Open(const SqliteOptions& o);

  sqlite3* db() const { return db_.get(); }

  // *keys_taken (if given): the transaction holds all of its business keys after the insert.
  Status Create(const core::TransSnapshot& t, bool* keys_taken = nullptr);
  Status Update(const TransUpdate& u);
  Status AddBranches(const std::string& gid, core::GlobalStatus expected,
                     const std::vector<core::BranchRow>& rows);
  Status ClaimDue(int64_t now_ms, int limit, int64_t lease_until_ms, const std::string& owner,
                  std::vector<std::string>* gids);
  Status ResetNextCronTime(const std::string& gid, int64_t now_ms);
  Status ResetCronTime(int64_t now_ms, int64_t timeout_ms, int limit, int64_t* changed);
  Status KvPut(const std::string& cat, const std::string& k, const std::string& v,
               int64_t expected_version, int64_t now_ms);
  Status KvDelete(const std::string& cat, const std::string& k);
  // retention.cc (issue 13): the call history and the retention.
  Status PrepareRetention();
  Status RecordAttempts(const std::string& gid, const TransUpdate::BranchUpdate& b);
  Status DeleteFinished(int64_t before_ms, int limit, RetentionCount* out);
  Status DeleteKvBefore(const std::string& cat, int64_t before_ms, int limit, int64_t* out);

  // Transaction control; each returns the SQLite result code.
  int Begin() { return Use(begin_).Step(); }
  int Commit() { return Use(commit_).Step(); }
  int Rollback() { return Use(rollback_).Step(); }
  int Savepoint() { return Use(savepoint_).Step(); }
  int Release() { return Use(release_).Step(); }
  int RollbackToSavepoint() { return Use(rollback_to_).Step(); }

  // Business keys (keys.cc).
  const sqlite_keys::Statements& keys() const { return keys_; }

 private:
  // Refuses a file that is not a SQLite database, is another application's database, or has a newer
  // schema than this binary. Reads only.
  Status CheckSchema(const std::string& path, int64_t* version = nullptr, bool* fresh = nullptr);
  Status Migrate(const std::string& path);
  Status PrepareAll();
  // The status of gid, or nullopt if it does not exist.
  // `id_out`, if given, receives the row's id when it exists.
  Status LookupStatus(const std::string& gid, std::optional<core::GlobalStatus>* out,
                      int64_t* id_out = nullptr);
  Status InsertBranch(int64_t trans_id, const std::string& gid, const core::BranchRow& b);

  Db db_;  // declared first: destroyed after the statements
  Stmt begin_, commit_, rollback_, savepoint_, release_, rollback_to_;
  Stmt insert_global_, insert_branch_, update_global_, select_status_, update_branch_;
  Stmt claim_select_, claim_update_, reset_next_, reset_cron_;
  Stmt kv_insert_, kv_update_, kv_delete_;
  Stmt attempt_insert_, attempt_trim_, finished_select_, finished_branches_, finished_attempts_,
      finished_global_, kv_retention_;  // retention.cc
  sqlite_keys::Statements keys_;
};

// ---------------------------------------------------------------------------------------------------
// A reader's connection (read-only). Used by one reader thread.

class ReaderConn {
 public:
  static Result<std::unique_ptr<ReaderConn>> Open(const SqliteOptions& o);

  sqlite3* db() const { return db_.get(); }

  Result<std::optional<core::TransSnapshot>> Load(const std::string& gid);
  Result<ListPage> List(const ListQuery& lq);
  Result<std::optional<KvRow>> KvGet(const std::string& cat, const std::string& k);
  Result<std::vector<KvRow>> KvQuery(const std::string& cat, const std::string& k);
  Result<KvPage> KvScan(const std::string& cat, int64_t before_id, int limit);
  // retention.cc (issue 13)
  Status PrepareRetention();
  Result<int64_t> CountDue(int64_t now_ms, int64_t cap);
  Result<std::vector<AttemptRow>> LoadAttempts(const std::string& gid);

 private:
  Result<std::optional<core::TransSnapshot>> LoadInTxn(const std::string& gid);

  // One cached statement per combination of filters present (at most 64), prepared on first use.
  Status ListStmt(const ListQuery& q, Stmt** out);
  Db db_;  // declared first: destroyed after the statements
  Stmt begin_, commit_, rollback_, load_global_, load_branches_;
  Stmt kv_get_, kv_query_, kv_scan_;
  Stmt count_due_, load_attempts_;  // retention.cc
  std::map<unsigned, Stmt> list_;
};

}  // namespace dtx::store::sqlite_internal
