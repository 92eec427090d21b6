#include "store/sqlite/keys.h"

#include <memory>

namespace dtx::store::sqlite_keys {

namespace {

struct Finalize {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, Finalize>;

Status Error(sqlite3* db, int rc, const char* what) {
  std::string msg = std::string("business keys: ") + what + ": " + sqlite3_errstr(rc) + " (" +
                    sqlite3_errmsg(db) + ")";
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return Status::Unavailable(std::move(msg));
  return Status::IoError(std::move(msg));
}

Status Prepare(sqlite3* db, const char* sql, StmtPtr* out) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &s, nullptr);
  out->reset(s);
  return rc == SQLITE_OK ? Status::Ok() : Error(db, rc, "prepare");
}

void BindText(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text64(s, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
}

std::string ColText(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p == nullptr ? std::string()
                      : std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, i)));
}

Status Exec(sqlite3* db, const char* sql, const std::string& gid, int64_t value, bool bind_value) {
  StmtPtr s;
  if (Status st = Prepare(db, sql, &s); !st.ok()) return st;
  BindText(s.get(), 1, gid);
  if (bind_value) sqlite3_bind_int64(s.get(), 2, value);
  int rc = sqlite3_step(s.get());
  return rc == SQLITE_DONE ? Status::Ok() : Error(db, rc, "write");
}

Status Hold(sqlite3* db, const std::string& gid) {
  return Exec(db, "UPDATE business_keys SET held = 1 WHERE gid = ?1 AND held = 0", gid, 0, false);
}

Status SetWakeup(sqlite3* db, const std::string& gid, int64_t at_ms, bool clear_lease) {
  return Exec(db,
              clear_lease ? "UPDATE trans_global SET next_cron_time = ?2, lease_until = 0 WHERE "
                            "gid = ?1 AND status IN ('prepared', 'submitted', 'aborting')"
                          : "UPDATE trans_global SET next_cron_time = ?2 WHERE gid = ?1 AND "
                            "status IN ('prepared', 'submitted', 'aborting')",
              gid, at_ms, true);
}

}  // namespace

Status Acquire(sqlite3* db, const std::string& gid, bool acquire, int64_t wait_until_ms,
               core::KeyState* out) {
  *out = core::KeyState{};
  StmtPtr mine, ahead;
  if (Status s = Prepare(
          db, "SELECT id, bkey, held FROM business_keys WHERE gid = ?1 ORDER BY bkey", &mine);
      !s.ok()) {
    return s;
  }
  BindText(mine.get(), 1, gid);
  struct Row {
    int64_t id;
    std::string key;
    bool held;
  };
  std::vector<Row> rows;
  int rc;
  while ((rc = sqlite3_step(mine.get())) == SQLITE_ROW) {
    rows.push_back({sqlite3_column_int64(mine.get(), 0), ColText(mine.get(), 1),
                    sqlite3_column_int64(mine.get(), 2) != 0});
  }
  if (rc != SQLITE_DONE) return Error(db, rc, "read");
  out->held = true;
  for (const Row& r : rows) out->held = out->held && r.held;
  if (out->held) return Status::Ok();  // holds them, or has none
  // The first row ahead on one of its keys: a holder, else the earliest waiter. Two index probes
  // per key (the holder index, then the range below its row), not a scan of the key's queue.
  if (Status s = Prepare(db,
                         "SELECT gid FROM (SELECT gid FROM business_keys WHERE bkey = ?1 AND "
                         "held = 1 AND gid <> ?2) UNION ALL SELECT gid FROM (SELECT gid FROM "
                         "business_keys WHERE bkey = ?1 AND id < ?3 ORDER BY id LIMIT 1) LIMIT 1",
                         &ahead);
      !s.ok()) {
    return s;
  }
  for (const Row& r : rows) {
    sqlite3_reset(ahead.get());
    BindText(ahead.get(), 1, r.key);
    BindText(ahead.get(), 2, gid);
    sqlite3_bind_int64(ahead.get(), 3, r.id);
    rc = sqlite3_step(ahead.get());
    if (rc == SQLITE_ROW) {
      out->waiting_for = ColText(ahead.get(), 0);
      out->waiting_key = r.key;
      break;
    }
    if (rc != SQLITE_DONE) return Error(db, rc, "read");
  }
  if (out->waiting_for.empty() && acquire) {
    if (Status s = Hold(db, gid); !s.ok()) return s;
    out->held = true;
    return Status::Ok();
  }
  if (wait_until_ms > 0) return SetWakeup(db, gid, wait_until_ms, true);
  return Status::Ok();
}

Status Wake(sqlite3* db, int64_t now_ms, int limit, std::vector<std::string>* out) {
  out->clear();
  // Waiters that are first on every one of their keys with no holder. Two of them never share a
  // key (a key has one first row), so all of them may take their keys at once.
  StmtPtr q;
  if (Status s = Prepare(db,
                         "SELECT w.gid FROM business_keys w WHERE w.held = 0 GROUP BY w.gid "
                         "HAVING sum(EXISTS (SELECT 1 FROM business_keys o WHERE o.bkey = w.bkey "
                         "AND o.id < w.id) OR EXISTS (SELECT 1 FROM business_keys h WHERE "
                         "h.bkey = w.bkey AND h.held = 1)) = 0 ORDER BY min(w.id) LIMIT ?1",
                         &q);
      !s.ok()) {
    return s;
  }
  sqlite3_bind_int64(q.get(), 1, limit);
  int rc;
  while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) out->push_back(ColText(q.get(), 0));
  if (rc != SQLITE_DONE) return Error(db, rc, "read");
  for (const std::string& gid : *out) {
    if (Status s = Hold(db, gid); !s.ok()) return s;
    if (Status s = SetWakeup(db, gid, now_ms, false); !s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace dtx::store::sqlite_keys
