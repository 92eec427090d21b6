#include "store/sqlite/keys.h"

#include <utility>

namespace dtx::store::sqlite_keys {

using sqlite_internal::Stmt;
using sqlite_internal::Use;

namespace {

Status Error(sqlite3* db, int rc, const char* what) {
  std::string msg = std::string("business keys: ") + what + ": " + sqlite3_errstr(rc) + " (" +
                    sqlite3_errmsg(db) + ")";
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return Status::Unavailable(std::move(msg));
  return Status::IoError(std::move(msg));
}

Status Write(sqlite3* db, Use& u) {
  int rc = u.Step();
  return rc == SQLITE_DONE ? Status::Ok() : Error(db, rc, "write");
}

Status Hold(const Statements& st, sqlite3* db, const std::string& gid) {
  Use u(st.hold);
  u.Text(1, gid);
  return Write(db, u);
}

Status SetWakeup(const Statements& st, sqlite3* db, const std::string& gid, int64_t at_ms,
                 bool clear_lease) {
  Use u(clear_lease ? st.set_wakeup_clear : st.set_wakeup);
  u.Text(1, gid).Int(2, at_ms);
  return Write(db, u);
}

}  // namespace

Status Statements::Prepare(sqlite3* db) {
  const std::pair<Stmt*, const char*> stmts[] = {
      {&mine, "SELECT seq, bkey, held FROM business_keys WHERE gid = ?1 ORDER BY bkey"},
      // The first row ahead on a key: a holder (place 0), else the earliest waiter. One probe of
      // the queue index (schema v8: the expression must be the index's), not a scan of the queue.
      {&ahead,
       "SELECT gid FROM business_keys WHERE bkey = ?1 AND (CASE WHEN held = 1 THEN 0 ELSE seq "
       "END) < ?3 AND gid <> ?2 ORDER BY (CASE WHEN held = 1 THEN 0 ELSE seq END) LIMIT 1"},
      {&hold, "UPDATE business_keys SET held = 1 WHERE gid = ?1 AND held = 0"},
      // Waiters that are first on every one of their keys with no holder (a holder's place is 0,
      // below every id). Two of them never share a key (a key has one first row), so all of them
      // may take their keys at once.
      {&wake_select,
       "SELECT w.gid FROM business_keys w WHERE w.held = 0 GROUP BY w.gid HAVING sum(EXISTS "
       "(SELECT 1 FROM business_keys o WHERE o.bkey = w.bkey AND (CASE WHEN o.held = 1 THEN 0 "
       "ELSE o.seq END) < w.seq)) = 0 ORDER BY min(w.seq) LIMIT ?1"},
      {&set_wakeup,
       "UPDATE trans_global SET next_cron_time = ?2 WHERE gid = ?1 AND status IN ('prepared', "
       "'submitted', 'aborting')"},
      {&set_wakeup_clear,
       "UPDATE trans_global SET next_cron_time = ?2, lease_until = 0 WHERE gid = ?1 AND status "
       "IN ('prepared', 'submitted', 'aborting')"},
      {&any_row, "SELECT 1 FROM business_keys WHERE bkey = ?1 LIMIT 1"},
      {&insert, "INSERT INTO business_keys (gid, bkey, seq, held) VALUES (?1, ?2, ?3, ?4)"},
      {&release, "DELETE FROM business_keys WHERE gid = ?1"},
      {&any_waiter, "SELECT 1 FROM business_keys WHERE held = 0 LIMIT 1"},
  };
  for (const auto& [stmt, sql] : stmts) {
    if (Status s = Stmt::Prepare(db, sql, stmt); !s.ok()) return s;
  }
  return Status::Ok();
}

Status Insert(const Statements& st, sqlite3* db, const std::string& gid, int64_t seq,
              const std::vector<std::string>& keys, bool* taken) {
  bool free = true;
  for (const std::string& key : keys) {
    Use probe(st.any_row);
    probe.Text(1, key);
    const int rc = probe.Step();
    if (rc == SQLITE_ROW) {
      free = false;
      break;
    }
    if (rc != SQLITE_DONE) return Error(db, rc, "read");
  }
  for (const std::string& key : keys) {
    Use u(st.insert);
    u.Text(1, gid).Text(2, key).Int(3, seq).Int(4, free ? 1 : 0);
    if (Status s = Write(db, u); !s.ok()) return s;
  }
  if (taken != nullptr) *taken = free;
  return Status::Ok();
}

Status Release(const Statements& st, sqlite3* db, const std::string& gid) {
  Use u(st.release);
  u.Text(1, gid);
  return Write(db, u);
}

Status Acquire(const Statements& st, sqlite3* db, const std::string& gid, bool acquire,
               int64_t wait_until_ms, core::KeyState* out) {
  *out = core::KeyState{};
  struct Row {
    int64_t seq;
    std::string key;
    bool held;
  };
  std::vector<Row> rows;
  {
    Use mine(st.mine);
    mine.Text(1, gid);
    int rc;
    while ((rc = mine.Step()) == SQLITE_ROW) {
      rows.push_back({mine.ColInt(0), mine.ColText(1), mine.ColInt(2) != 0});
    }
    if (rc != SQLITE_DONE) return Error(db, rc, "read");
  }
  out->held = true;
  for (const Row& r : rows) out->held = out->held && r.held;
  if (out->held) return Status::Ok();  // holds them, or has none
  for (const Row& r : rows) {
    Use ahead(st.ahead);
    ahead.Text(1, r.key).Text(2, gid).Int(3, r.seq);
    int rc = ahead.Step();
    if (rc == SQLITE_ROW) {
      out->waiting_for = ahead.ColText(0);
      out->waiting_key = r.key;
      break;
    }
    if (rc != SQLITE_DONE) return Error(db, rc, "read");
  }
  if (out->waiting_for.empty() && acquire) {
    if (Status s = Hold(st, db, gid); !s.ok()) return s;
    out->held = true;
    return Status::Ok();
  }
  if (wait_until_ms > 0) return SetWakeup(st, db, gid, wait_until_ms, true);
  return Status::Ok();
}

Status AnyWaiter(const Statements& st, sqlite3* db, bool* out) {
  Use q(st.any_waiter);
  const int rc = q.Step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error(db, rc, "read");
  *out = rc == SQLITE_ROW;
  return Status::Ok();
}

Status Wake(const Statements& st, sqlite3* db, int64_t now_ms, int limit,
            std::vector<std::string>* out) {
  out->clear();
  {
    Use q(st.wake_select);
    q.Int(1, limit);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) out->push_back(q.ColText(0));
    if (rc != SQLITE_DONE) return Error(db, rc, "read");
  }
  for (const std::string& gid : *out) {
    if (Status s = Hold(st, db, gid); !s.ok()) return s;
    if (Status s = SetWakeup(st, db, gid, now_ms, false); !s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace dtx::store::sqlite_keys
