// The SQLite store's reads, on a reader thread's read-only connection.
#include <sqlite3.h>

#include <string>
#include <utility>
#include <vector>

#include "store/internal.h"
#include "store/sqlite/conns.h"

namespace dtx::store::sqlite_internal {

Result<std::unique_ptr<ReaderConn>> ReaderConn::Open(const SqliteOptions& o) {
  auto db = OpenDb(o.path, SQLITE_OPEN_READONLY, o.busy_timeout_ms);
  if (!db.ok()) return db.status();
  auto r = std::make_unique<ReaderConn>();
  r->db_ = std::move(db).value();
  const std::pair<Stmt*, std::string> stmts[] = {
      {&r->begin_, "BEGIN"},
      {&r->commit_, "COMMIT"},
      {&r->rollback_, "ROLLBACK"},
      {&r->load_global_,
       std::string("SELECT ") + kGlobalColumns + " FROM trans_global WHERE gid = ?1"},
      {&r->load_branches_, std::string("SELECT ") + kBranchColumns +
                               " FROM trans_branch_op WHERE trans_id = ?1 ORDER BY id"},
      {&r->kv_get_, std::string("SELECT ") + kKvColumns + " FROM kv WHERE cat = ?1 AND k = ?2"},
      {&r->kv_query_, std::string("SELECT ") + kKvColumns +
                          " FROM kv WHERE (?1 = '' OR cat = ?1) AND (?2 = '' OR k = ?2) "
                          "ORDER BY id"},
      {&r->kv_scan_, std::string("SELECT ") + kKvColumns +
                         " FROM kv WHERE cat = ?1 AND (?2 = 0 OR id < ?2) "
                         "ORDER BY id DESC LIMIT ?3"},
  };
  for (const auto& [stmt, sql] : stmts) {
    if (Status s = Stmt::Prepare(r->db(), sql, stmt); !s.ok()) return s;
  }
  if (Status s = r->PrepareRetention(); !s.ok()) return s;
  return r;
}

Result<std::optional<core::TransSnapshot>> ReaderConn::Load(const std::string& gid) {
  // Both SELECTs in one read transaction: one consistent snapshot of the WAL.
  int rc = Use(begin_).Step();
  if (rc != SQLITE_DONE) return SqlError(db(), rc, "begin read");
  auto r = LoadInTxn(gid);
  rc = Use(r.ok() ? commit_ : rollback_).Step();
  if (rc != SQLITE_DONE && r.ok()) return SqlError(db(), rc, "end read");
  return r;
}

Result<ListPage> ReaderConn::List(const ListQuery& lq) {
  Stmt* stmt = nullptr;
  if (Status s = ListStmt(lq, &stmt); !s.ok()) return s;
  Use q(*stmt);
  if (!lq.gid.empty()) q.Named(":gid", lq.gid);
  if (!lq.status.empty()) q.Named(":status", lq.status);
  if (!lq.trans_type.empty()) q.Named(":type", lq.trans_type);
  if (lq.create_time_start_ms != 0) q.Named(":start", lq.create_time_start_ms);
  if (lq.create_time_end_ms != 0) q.Named(":end", lq.create_time_end_ms);
  if (lq.before_id != 0) q.Named(":before", lq.before_id);
  q.Named(":limit", static_cast<int64_t>(lq.limit));
  ListPage page;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    auto g = ReadGlobal(q);
    if (!g.ok()) return g.status();
    page.transactions.push_back(std::move(g).value());
  }
  if (rc != SQLITE_DONE) return SqlError(db(), rc, "list");
  if (static_cast<int>(page.transactions.size()) == lq.limit) {
    page.next_before_id = page.transactions.back().id;
  }
  return page;
}

Result<std::optional<KvRow>> ReaderConn::KvGet(const std::string& cat, const std::string& k) {
  Use q(kv_get_);
  q.Text(1, cat).Text(2, k);
  int rc = q.Step();
  if (rc == SQLITE_DONE) return std::optional<KvRow>();
  if (rc != SQLITE_ROW) return SqlError(db(), rc, "kv get");
  return std::optional<KvRow>(ReadKv(q));
}

Result<std::vector<KvRow>> ReaderConn::KvQuery(const std::string& cat, const std::string& k) {
  Use q(kv_query_);
  q.Text(1, cat).Text(2, k);
  std::vector<KvRow> rows;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) rows.push_back(ReadKv(q));
  if (rc != SQLITE_DONE) return SqlError(db(), rc, "kv query");
  return rows;
}

Result<KvPage> ReaderConn::KvScan(const std::string& cat, int64_t before_id, int limit) {
  Use q(kv_scan_);
  q.Text(1, cat).Int(2, before_id).Int(3, limit);
  KvPage page;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) page.rows.push_back(ReadKv(q));
  if (rc != SQLITE_DONE) return SqlError(db(), rc, "kv scan");
  if (static_cast<int>(page.rows.size()) == limit) page.next_before_id = page.rows.back().id;
  return page;
}

Result<std::optional<core::TransSnapshot>> ReaderConn::LoadInTxn(const std::string& gid) {
  core::TransSnapshot t;
  {
    Use q(load_global_);
    q.Text(1, gid);
    int rc = q.Step();
    if (rc == SQLITE_DONE) return std::optional<core::TransSnapshot>();
    if (rc != SQLITE_ROW) return SqlError(db(), rc, "load transaction");
    auto g = ReadGlobal(q);
    if (!g.ok()) return g.status();
    t.global = std::move(g).value();
  }
  Use q(load_branches_);
  q.Int(1, t.global.id);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    auto b = ReadBranch(q);
    if (!b.ok()) return b.status();
    t.branches.push_back(std::move(b).value());
  }
  if (rc != SQLITE_DONE) return SqlError(db(), rc, "load branches");
  return std::optional<core::TransSnapshot>(std::move(t));
}

Status ReaderConn::ListStmt(const ListQuery& q, Stmt** out) {
  unsigned mask = (q.gid.empty() ? 0U : 1U) | (q.status.empty() ? 0U : 2U) |
                  (q.trans_type.empty() ? 0U : 4U) | (q.create_time_start_ms == 0 ? 0U : 8U) |
                  (q.create_time_end_ms == 0 ? 0U : 16U) | (q.before_id == 0 ? 0U : 32U);
  auto it = list_.find(mask);
  if (it == list_.end()) {
    std::string sql = std::string("SELECT ") + kGlobalColumns + " FROM trans_global WHERE 1";
    if ((mask & 1U) != 0) sql += " AND gid = :gid";
    if ((mask & 2U) != 0) sql += " AND status = :status";
    if ((mask & 4U) != 0) sql += " AND trans_type = :type";
    if ((mask & 8U) != 0) sql += " AND create_time >= :start";
    if ((mask & 16U) != 0) sql += " AND create_time <= :end";
    if ((mask & 32U) != 0) sql += " AND id < :before";
    sql += " ORDER BY id DESC LIMIT :limit";
    Stmt s;
    if (Status st = Stmt::Prepare(db(), sql, &s); !st.ok()) return st;
    it = list_.emplace(mask, std::move(s)).first;
  }
  *out = &it->second;
  return Status::Ok();
}

}  // namespace dtx::store::sqlite_internal
