// SQLite: business keys (store.h AcquireKeys / WakeKeyWaiters; semantics of memory/memory_keys.cc).
// The key rows are written by triggers of schema v6 (keys.cc kSqliteKeysMigration): one queued row
// per key when a transaction whose custom_data lists "business_keys" is inserted, and all of its
// rows deleted when an update makes it final — in the same statement, so in the same commit.
// The functions run on the writer's connection inside its write transaction.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/business_keys.h"
#include "util/status.h"

namespace dtx::store::sqlite_keys {

// Schema v6.
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

Status Acquire(sqlite3* db, const std::string& gid, bool acquire, int64_t wait_until_ms,
               core::KeyState* out);
Status Wake(sqlite3* db, int64_t now_ms, int limit, std::vector<std::string>* out);

}  // namespace dtx::store::sqlite_keys
