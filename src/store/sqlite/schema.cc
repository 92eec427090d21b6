// The SQLite store's schema: the migration steps, and the open-time checks that apply them.
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <iterator>
#include <string>
#include <string_view>

#include "store/sqlite/conns.h"
#include "store/sqlite/keys.h"
#include "store/sqlite/sqlite_store.h"

namespace dtx::store {
namespace {

// ---------------------------------------------------------------------------------------------------
// Schema. Each entry upgrades the database from version (index) to version (index + 1). Never edit
// a released step: append a new one. All steps run in one transaction at open. Times are INTEGER
// epoch milliseconds (0 = unset); enums are their wire strings (core::ToString); options is the
// JSON string of core::EncodeOptionsJson.
constexpr std::string_view kMigrations[] = {
    // v1: the initial schema.
    R"sql(
CREATE TABLE trans_global (
  id                 INTEGER PRIMARY KEY AUTOINCREMENT,
  gid                TEXT    NOT NULL UNIQUE,
  trans_type         TEXT    NOT NULL,
  status             TEXT    NOT NULL,
  protocol           TEXT    NOT NULL DEFAULT '',
  query_prepared     TEXT    NOT NULL DEFAULT '',
  custom_data        TEXT    NOT NULL DEFAULT '',
  rollback_reason    TEXT    NOT NULL DEFAULT '',
  result             TEXT    NOT NULL DEFAULT '',
  owner              TEXT    NOT NULL DEFAULT '',
  options            TEXT    NOT NULL DEFAULT '',
  create_time        INTEGER NOT NULL DEFAULT 0,
  update_time        INTEGER NOT NULL DEFAULT 0,
  finish_time        INTEGER NOT NULL DEFAULT 0,
  rollback_time      INTEGER NOT NULL DEFAULT 0,
  next_cron_interval INTEGER NOT NULL DEFAULT 0,
  next_cron_time     INTEGER NOT NULL DEFAULT 0,
  retry_count        INTEGER NOT NULL DEFAULT 0
);
-- Due work only: finished rows (the vast majority over time) are not in this index, so ClaimDue and
-- ResetCronTime cost O(unfinished). Queries must repeat this exact WHERE term to use it.
CREATE INDEX trans_global_due ON trans_global(next_cron_time)
  WHERE status IN ('prepared','submitted','aborting');
-- List filters; both also carry the rowid, so "status = ? AND id < ? ORDER BY id DESC" is an index walk.
CREATE INDEX trans_global_status ON trans_global(status);
CREATE INDEX trans_global_create_time ON trans_global(create_time);
CREATE TABLE trans_branch_op (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  gid         TEXT    NOT NULL,
  url         TEXT    NOT NULL DEFAULT '',
  bin_data    BLOB    NOT NULL DEFAULT x'',
  branch_id   TEXT    NOT NULL,
  op          TEXT    NOT NULL,
  status      TEXT    NOT NULL,
  create_time INTEGER NOT NULL DEFAULT 0,
  update_time INTEGER NOT NULL DEFAULT 0,
  finish_time INTEGER NOT NULL DEFAULT 0,
  attempts    INTEGER NOT NULL DEFAULT 0,
  last_error  TEXT    NOT NULL DEFAULT '',
  UNIQUE (gid, branch_id, op)
);
)sql",
    // v2: the key-value table (topics: cat 'topics', k = topic name, v = JSON of subscribers).
    R"sql(
CREATE TABLE kv (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  cat         TEXT    NOT NULL,
  k           TEXT    NOT NULL,
  v           TEXT    NOT NULL DEFAULT '',
  version     INTEGER NOT NULL DEFAULT 1,
  create_time INTEGER NOT NULL DEFAULT 0,
  update_time INTEGER NOT NULL DEFAULT 0,
  UNIQUE (cat, k)
);
)sql",
    // v3: trans_global and trans_branch_op without AUTOINCREMENT. AUTOINCREMENT makes every insert
    // also update sqlite_sequence; a plain INTEGER PRIMARY KEY takes max(id) + 1, which is as
    // monotonic here because dtx never deletes rows (a retention job that deletes old rows keeps
    // the newest). It cost ~15 % of the coordinator's CPU per saga (docs/benchmarks.md). Branch
    // rows are keyed by their transaction's id (trans_id) instead of its gid: ids ascend, so new
    // rows append to that index even when gids are random (client-side UUIDs), where a gid key
    // dirtied one more random page per transaction. SQLite cannot change a table in place: each
    // table is rebuilt (rows, ids and indexes kept).
    R"sql(
CREATE TABLE trans_global_v3 (
  id                 INTEGER PRIMARY KEY,
  gid                TEXT    NOT NULL UNIQUE,
  trans_type         TEXT    NOT NULL,
  status             TEXT    NOT NULL,
  protocol           TEXT    NOT NULL DEFAULT '',
  query_prepared     TEXT    NOT NULL DEFAULT '',
  custom_data        TEXT    NOT NULL DEFAULT '',
  rollback_reason    TEXT    NOT NULL DEFAULT '',
  result             TEXT    NOT NULL DEFAULT '',
  owner              TEXT    NOT NULL DEFAULT '',
  options            TEXT    NOT NULL DEFAULT '',
  create_time        INTEGER NOT NULL DEFAULT 0,
  update_time        INTEGER NOT NULL DEFAULT 0,
  finish_time        INTEGER NOT NULL DEFAULT 0,
  rollback_time      INTEGER NOT NULL DEFAULT 0,
  next_cron_interval INTEGER NOT NULL DEFAULT 0,
  next_cron_time     INTEGER NOT NULL DEFAULT 0,
  retry_count        INTEGER NOT NULL DEFAULT 0
);
INSERT INTO trans_global_v3 (id, gid, trans_type, status, protocol, query_prepared, custom_data,
  rollback_reason, result, owner, options, create_time, update_time, finish_time, rollback_time,
  next_cron_interval, next_cron_time, retry_count)
SELECT id, gid, trans_type, status, protocol, query_prepared, custom_data, rollback_reason, result,
  owner, options, create_time, update_time, finish_time, rollback_time, next_cron_interval,
  next_cron_time, retry_count FROM trans_global ORDER BY id;
DROP TABLE trans_global;
ALTER TABLE trans_global_v3 RENAME TO trans_global;
-- The same rows as v1's due index; the predicate is written with OR because SQLite evaluates a
-- partial index's IN (...) list through a temporary b-tree for every row written.
CREATE INDEX trans_global_due ON trans_global(next_cron_time)
  WHERE status = 'prepared' OR status = 'submitted' OR status = 'aborting';
CREATE INDEX trans_global_status ON trans_global(status);
CREATE INDEX trans_global_create_time ON trans_global(create_time);
CREATE TABLE trans_branch_op_v3 (
  id          INTEGER PRIMARY KEY,
  trans_id    INTEGER NOT NULL,
  gid         TEXT    NOT NULL,
  url         TEXT    NOT NULL DEFAULT '',
  bin_data    BLOB    NOT NULL DEFAULT x'',
  branch_id   TEXT    NOT NULL,
  op          TEXT    NOT NULL,
  status      TEXT    NOT NULL,
  create_time INTEGER NOT NULL DEFAULT 0,
  update_time INTEGER NOT NULL DEFAULT 0,
  finish_time INTEGER NOT NULL DEFAULT 0,
  attempts    INTEGER NOT NULL DEFAULT 0,
  last_error  TEXT    NOT NULL DEFAULT '',
  UNIQUE (trans_id, branch_id, op)
);
INSERT INTO trans_branch_op_v3 (id, trans_id, gid, url, bin_data, branch_id, op, status,
  create_time, update_time, finish_time, attempts, last_error)
SELECT b.id, g.id, b.gid, b.url, b.bin_data, b.branch_id, b.op, b.status, b.create_time,
  b.update_time, b.finish_time, b.attempts, b.last_error
FROM trans_branch_op b JOIN trans_global g ON g.gid = b.gid ORDER BY b.id;
DROP TABLE trans_branch_op;
ALTER TABLE trans_branch_op_v3 RENAME TO trans_branch_op;
DELETE FROM sqlite_sequence WHERE name IN ('trans_global', 'trans_branch_op');
)sql",
    // v4: the lease of a round in flight, kept apart from the wake-up (core::GlobalTrans): an
    // operator's retry makes a transaction due without cutting a lease short.
    R"sql(
ALTER TABLE trans_global ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
)sql",
    // v5 (issue 13): the call history of branch rows (the newest core::kMaxAttemptLog per row,
    // written by the update that records them; keyed by gid, deleted with its transaction) and
    // the index of the retention's deletions (finished rows only, by update_time; written with OR
    // for the reason given at v3).
    R"sql(
CREATE TABLE trans_branch_attempt (
  gid         TEXT    NOT NULL,
  branch_id   TEXT    NOT NULL,
  op          TEXT    NOT NULL,
  seq         INTEGER NOT NULL,
  call_time   INTEGER NOT NULL DEFAULT 0,
  http_status INTEGER NOT NULL DEFAULT 0,
  latency_ms  INTEGER NOT NULL DEFAULT 0,
  result      TEXT    NOT NULL DEFAULT '',
  error       TEXT    NOT NULL DEFAULT '',
  PRIMARY KEY (gid, branch_id, op, seq)
) WITHOUT ROWID;
CREATE INDEX trans_global_finished ON trans_global(update_time)
  WHERE status = 'succeed' OR status = 'failed';
)sql",
    // v6: business keys (issue 15 item 2; store/sqlite/keys.h).
    sqlite_keys::kSqliteKeysMigration,
    // v7: business keys, cheaper (store/sqlite/keys.h).
    sqlite_keys::kSqliteKeysMigrationV7,
    // v8: the key rows written by the writer, not by triggers (store/sqlite/keys.h).
    sqlite_keys::kSqliteKeysMigrationV8,
};
static_assert(std::size(kMigrations) == kSqliteSchemaVersion,
              "kSqliteSchemaVersion must equal the number of migration steps");

}  // namespace

std::string_view SqliteMigrationSql(int version) {
  DTX_INVARIANT(version >= 1 && version <= kSqliteSchemaVersion, "no such schema version");
  return kMigrations[version - 1];
}

namespace sqlite_internal {

Status WriterConn::CheckSchema(const std::string& path, int64_t* version_out, bool* fresh_out) {
  auto app_id = QueryInt(db(), "PRAGMA application_id");
  if (!app_id.ok()) {
    return Status(app_id.status().code(),
                  path + " is not a usable SQLite database: " + app_id.status().message());
  }
  auto version = QueryInt(db(), "PRAGMA user_version");
  if (!version.ok()) return version.status();
  auto objects = QueryInt(db(), "SELECT count(*) FROM sqlite_schema");
  if (!objects.ok()) return objects.status();
  const bool fresh = *version == 0 && *app_id == 0 && *objects == 0;
  if (!fresh && *app_id != kSqliteApplicationId) {
    return Status::InvalidArgument(path +
                                   " is a SQLite database but not a dtx database (application_id " +
                                   std::to_string(*app_id) + "); refusing to touch it");
  }
  if (*version > kSqliteSchemaVersion) {
    return Status::InvalidArgument(
        path + " has schema version " + std::to_string(*version) +
        ", newer than this dtx binary knows (" + std::to_string(kSqliteSchemaVersion) +
        "); it was written by a newer dtx: upgrade dtx (downgrade is not supported)");
  }
  if (version_out != nullptr) *version_out = *version;
  if (fresh_out != nullptr) *fresh_out = fresh;
  return Status::Ok();
}

Status WriterConn::Migrate(const std::string& path) {
  if (Status s = Exec(db(), "BEGIN IMMEDIATE"); !s.ok()) return s;
  auto fail = [&](Status s) {
    Status r = Exec(db(), "ROLLBACK");
    if (!r.ok()) spdlog::error("rollback of schema migration failed: {}", r.ToString());
    return s;
  };
  // Again, under the write lock: another process may have migrated the file meanwhile.
  int64_t version = 0;
  bool fresh = false;
  if (Status s = CheckSchema(path, &version, &fresh); !s.ok()) return fail(s);
  for (int64_t v = version; v < kSqliteSchemaVersion; ++v) {
    if (Status s = Exec(db(), std::string(kMigrations[v])); !s.ok()) {
      return fail(Status(s.code(), "schema migration to version " + std::to_string(v + 1) +
                                       " failed: " + s.message()));
    }
  }
  if (version != kSqliteSchemaVersion || fresh) {
    std::string set = "PRAGMA user_version=" + std::to_string(kSqliteSchemaVersion) +
                      "; PRAGMA application_id=" + std::to_string(kSqliteApplicationId);
    if (Status s = Exec(db(), set); !s.ok()) return fail(s);
  }
  if (Status s = Exec(db(), "COMMIT"); !s.ok()) return fail(s);
  if (version != kSqliteSchemaVersion) {
    spdlog::info("sqlite store {}: schema migrated from version {} to {}", path, version,
                 kSqliteSchemaVersion);
  }
  return Status::Ok();
}

}  // namespace sqlite_internal
}  // namespace dtx::store
