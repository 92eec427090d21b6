// SQLite: business keys (store.h AcquireKeys / WakeKeyWaiters; semantics of memory/memory_keys.cc).
// The key rows are written by the writer itself (since schema v8; v6 and v7 used triggers): one
// row per entry of TransSnapshot::business_keys by the Create that inserts the transaction
// (Insert), and all of its rows deleted by the Update that makes it final (Release) — in the same
// write transaction, so in the same commit. The functions run on the writer's connection inside
// its write transaction.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/business_keys.h"
#include "store/sqlite/sqlite_db.h"
#include "util/status.h"

namespace dtx::store::sqlite_keys {

// Schema v6 (released in the v6 store; kept as it was). v7 below replaces its table and triggers.
inline constexpr std::string_view kSqliteKeysMigration = R"sql(
CREATE TABLE business_keys (
  id   INTEGER PRIMARY KEY,
  bkey TEXT    NOT NULL,
  gid  TEXT    NOT NULL,
  held INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX business_keys_key ON business_keys(bkey, id);
CREATE INDEX business_keys_gid ON business_keys(gid);
-- Never two holders of one key, whatever the code above it does.
CREATE UNIQUE INDEX business_keys_holder ON business_keys(bkey) WHERE held = 1;
-- The API stores the keys normalized in custom_data (core::WithKeySpec: sorted, distinct, under
-- the exact member name "business_keys").
CREATE TRIGGER business_keys_queue AFTER INSERT ON trans_global
  WHEN instr(NEW.custom_data, '"business_keys"') > 0 AND json_valid(NEW.custom_data)
BEGIN
  INSERT INTO business_keys (bkey, gid)
    SELECT DISTINCT value, NEW.gid FROM json_each(NEW.custom_data, '$.business_keys')
    WHERE type = 'text' ORDER BY value;
END;
CREATE TRIGGER business_keys_release AFTER UPDATE OF status ON trans_global
  WHEN NEW.status = 'succeed' OR NEW.status = 'failed'
BEGIN
  DELETE FROM business_keys WHERE gid = NEW.gid;
END;
)sql";

// Schema v7: cheaper per transaction (docs/benchmarks.md "Business keys"). One b-tree keyed by
// (gid, bkey) instead of a rowid table plus a gid index; the queue order is the transaction's id
// (`seq`, trans_global.id: increasing in commit order under SQLite's single writer, and what the
// v6 row ids followed); and a transaction none of whose keys has any row takes them at insert
// (held = 1), so the engine's first acquire only reads. The NOT EXISTS excludes the transaction's
// own rows, so it gives every row of one insert the same answer (all or none).
inline constexpr std::string_view kSqliteKeysMigrationV7 = R"sql(
DROP TRIGGER business_keys_queue;
DROP TRIGGER business_keys_release;
CREATE TABLE business_keys_v7 (
  gid  TEXT    NOT NULL,
  bkey TEXT    NOT NULL,
  seq  INTEGER NOT NULL,
  held INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (gid, bkey)
) WITHOUT ROWID;
INSERT INTO business_keys_v7 (gid, bkey, seq, held)
  SELECT b.gid, b.bkey, g.id, b.held FROM business_keys b JOIN trans_global g ON g.gid = b.gid;
DROP TABLE business_keys;
ALTER TABLE business_keys_v7 RENAME TO business_keys;
CREATE INDEX business_keys_key ON business_keys(bkey, seq);
-- Never two holders of one key, whatever the code above it does.
CREATE UNIQUE INDEX business_keys_holder ON business_keys(bkey) WHERE held = 1;
CREATE TRIGGER business_keys_queue AFTER INSERT ON trans_global
  WHEN instr(NEW.custom_data, '"business_keys"') > 0 AND json_valid(NEW.custom_data)
BEGIN
  INSERT INTO business_keys (gid, bkey, seq, held)
    SELECT DISTINCT NEW.gid, k.value, NEW.id,
        NOT EXISTS (SELECT 1 FROM json_each(NEW.custom_data, '$.business_keys') j
                    JOIN business_keys b ON b.bkey = j.value AND b.gid <> NEW.gid)
      FROM json_each(NEW.custom_data, '$.business_keys') k WHERE k.type = 'text';
END;
CREATE TRIGGER business_keys_release AFTER UPDATE OF status ON trans_global
  WHEN NEW.status = 'succeed' OR NEW.status = 'failed'
BEGIN
  DELETE FROM business_keys WHERE gid = NEW.gid;
END;
-- Keys taken by a waiter that was parked (its wake-up is the park's: its timeout or a day away):
-- in the same write its wake-up comes back to its round's lease (due at once if no lease covers
-- it), so that a crash never leaves it, and everything queued behind it, asleep until then.
CREATE TRIGGER business_keys_taken AFTER UPDATE OF held ON business_keys
  WHEN NEW.held = 1 AND OLD.held = 0
BEGIN
  UPDATE trans_global SET next_cron_time = lease_until
    WHERE gid = NEW.gid AND next_cron_time > lease_until
      AND status IN ('prepared', 'submitted', 'aborting');
END;
)sql";

// Schema v8: the key rows are written by WriterConn::Create / Update (Insert and Release below)
// instead of the v7 triggers. The insert trigger parsed custom_data with json_each three times
// and ran a trigger program on every insert: ~81,000 instructions of the writer per saga with one
// key, where the prepared statements below take a fraction of that (docs/benchmarks.md
// "Business keys"). business_keys_taken stays a trigger (it runs only when a waiter takes keys).
// And one index per key's queue instead of two: ordered by (key, 0 for the holder, else the
// transaction's id), UNIQUE, so it still refuses two holders of one key; its first entry on a key
// is the holder, else the earliest waiter (v7 needed the queue index plus a holder index).
inline constexpr std::string_view kSqliteKeysMigrationV8 = R"sql(
DROP TRIGGER business_keys_queue;
DROP TRIGGER business_keys_release;
DROP INDEX business_keys_key;
DROP INDEX business_keys_holder;
CREATE UNIQUE INDEX business_keys_queue ON business_keys(bkey,
  (CASE WHEN held = 1 THEN 0 ELSE seq END));
)sql";

// The writer connection's statements for business keys, prepared once when it opens (schema v6
// present) and kept, like its other statements: preparing them on every call was ~12 % of the
// coordinator's CPU with a key on every saga.
struct Statements {
  sqlite_internal::Stmt mine, ahead, hold, wake_select, set_wakeup, set_wakeup_clear;
  sqlite_internal::Stmt any_row, insert, release, any_waiter;
  Status Prepare(sqlite3* db);
};

// The key rows of a transaction just inserted with id `seq` (keys sorted, distinct), taken at
// once (held) when none of its keys has any row, else queued. *taken (if given): taken.
Status Insert(const Statements& st, sqlite3* db, const std::string& gid, int64_t seq,
              const std::vector<std::string>& keys, bool* taken);
// Deletes gid's key rows (it became final). Cheap when it has none: one probe of the primary key.
Status Release(const Statements& st, sqlite3* db, const std::string& gid);

Status Acquire(const Statements& st, sqlite3* db, const std::string& gid, bool acquire,
               int64_t wait_until_ms, core::KeyState* out);
// *out: some key row is not held (a transaction waits).
Status AnyWaiter(const Statements& st, sqlite3* db, bool* out);
Status Wake(const Statements& st, sqlite3* db, int64_t now_ms, int limit,
            std::vector<std::string>* out);

}  // namespace dtx::store::sqlite_keys
