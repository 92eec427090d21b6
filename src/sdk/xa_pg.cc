// XA branches on PostgreSQL (include/dtx/xa_pg.h): PREPARE TRANSACTION on action, COMMIT / ROLLBACK
// PREPARED on the coordinator's phase 2, a fence row in the barrier table against late actions.
#include "dtx/xa_pg.h"

#include <libpq-fe.h>

#include <boost/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "sdk/pg_util.h"

namespace dtx {
namespace {

namespace json = boost::json;
using pg_util::PgError;
using pg_util::PgResult;

constexpr std::string_view kFenceOp = "action";
constexpr std::string_view kFenceBarrierId = "01";
// SQLSTATE of COMMIT/ROLLBACK PREPARED for an xid that does not exist (undefined_object).
constexpr std::string_view kUnknownXid = "42704";
// SQLSTATE of PREPARE TRANSACTION with max_prepared_transactions = 0
// (object_not_in_prerequisite_state).
constexpr std::string_view kPreparedDisabled = "55000";

// Runs `verb 'xid'` (PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED). With `unknown_xid`,
// an xid that does not exist is success (and sets it).
Status ExecXid(PGconn* conn, std::string_view verb, const std::string& xid, bool* unknown_xid) {
  char* quoted = PQescapeLiteral(conn, xid.data(), xid.size());
  if (quoted == nullptr) return Status::Unavailable("xa: cannot quote xid: " + xid);
  std::string sql = std::string(verb) + " " + quoted;
  PQfreemem(quoted);
  PgResult res(PQexec(conn, sql.c_str()));
  if (PQresultStatus(res.get()) == PGRES_COMMAND_OK) return Status::Ok();
  std::string_view state = pg_util::SqlState(res.get());
  if (unknown_xid != nullptr && state == kUnknownXid) {
    *unknown_xid = true;
    return Status::Ok();
  }
  Status s = PgError(conn, res.get(), "xa: " + sql);
  if (state == kPreparedDisabled) {
    return Status::Unavailable(s.message() +
                               " (set max_prepared_transactions > 0 on the PostgreSQL server)");
  }
  return s;
}

BranchResult ResultOf(const Status& s) {
  if (s.ok()) return BranchResult::Success();
  if (s.code() == Code::kConflict) return BranchResult::Failure(s.message());
  if (s.code() == Code::kOngoing) return BranchResult::Ongoing();
  return BranchResult::Error(s.ToString());
}

std::string RegisterBody(const BranchRequest& r, const std::string& phase2_url) {
  json::object body;  // strings only (PROTOCOL.md §2.3)
  body["gid"] = r.gid;
  body["trans_type"] = "xa";
  body["branch_id"] = r.branch_id;
  body["url"] = phase2_url;
  return json::serialize(body);
}

// op=action inside BEGIN ... PREPARE TRANSACTION (see the header).
Status Action(const BranchRequest& r, PGconn* conn, const std::function<Status(PgTx&)>& business,
              const PgXaOptions& options) {
  std::optional<std::string> dtm = r.QueryParam("dtm");
  std::optional<std::string> phase2_url = r.QueryParam("phase2_url");
  if (!dtm || dtm->empty() || !phase2_url || phase2_url->empty()) {
    return Status::InvalidArgument("xa: an action call needs the dtm and phase2_url parameters");
  }
  PgDb db(conn, options.barrier);
  if (Status s = db.Begin(); !s.ok()) return s;
  Result<int> inserted =
      db.InsertIgnore({"xa", r.gid, r.branch_id, kFenceOp, kFenceBarrierId, kFenceOp});
  if (!inserted.ok()) {
    db.Rollback();
    return inserted.status();
  }
  if (*inserted == 0) {  // this branch was prepared or committed before, or fenced by a rollback
    Result<std::string> reason = db.SelectReason(r.gid, r.branch_id, kFenceOp, kFenceBarrierId);
    db.Rollback();
    if (!reason.ok()) return reason.status();
    if (*reason == "rollback") {
      return Status::Conflict("xa: branch " + r.branch_id + " of " + r.gid + " was rolled back");
    }
    return Status::Ok();  // a repeated action: already prepared (or committed)
  }
  PgTx tx{conn};
  Status s;
  try {
    s = business(tx);
  } catch (...) {
    db.Rollback();
    throw;
  }
  if (s.ok()) {
    Client coordinator(*dtm, ClientOptions{.request_timeout = options.register_timeout});
    s = coordinator.RegisterBranch(RegisterBody(r, *phase2_url));
    if (!s.ok()) s = Status(s.code(), "xa: registerBranch: " + s.message());
  }
  if (s.ok()) s = ExecXid(conn, "PREPARE TRANSACTION", XaXid(r.gid, r.branch_id), nullptr);
  if (!s.ok()) db.Rollback();
  return s;
}

Status Rollback(const BranchRequest& r, PGconn* conn, const PgXaOptions& options) {
  bool unknown = false;
  if (Status s = ExecXid(conn, "ROLLBACK PREPARED", XaXid(r.gid, r.branch_id), &unknown); !s.ok()) {
    return s;
  }
  // The fence: a late action finds this row and refuses. Waits (lock_timeout) while an action of
  // the same branch is still open; the coordinator then retries the rollback.
  PgDb db(conn, options.barrier);
  Result<int> fenced =
      db.InsertIgnore({"xa", r.gid, r.branch_id, kFenceOp, kFenceBarrierId, "rollback"});
  return fenced.ok() ? Status::Ok() : fenced.status();
}

}  // namespace

std::string XaXid(std::string_view gid, std::string_view branch_id) {
  std::string xid(gid);
  xid += '-';
  xid += branch_id;
  return xid;
}

BranchResult HandleXaBranch(const BranchRequest& request, PGconn* conn,
                            const std::function<Status(PgTx&)>& business,
                            const PgXaOptions& options) {
  if (conn == nullptr || !business) return BranchResult::Error("xa: no connection or no business");
  if (request.gid.empty() || request.branch_id.empty() || request.trans_type != "xa") {
    return BranchResult::Error("xa: not an xa branch call (gid, branch_id, trans_type=xa needed)");
  }
  if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
    return BranchResult::Error("xa: the connection is inside a transaction or not usable");
  }
  if (request.op == "action") return ResultOf(Action(request, conn, business, options));
  if (request.op == "commit") {
    bool unknown = false;  // committed by an earlier call: success
    return ResultOf(
        ExecXid(conn, "COMMIT PREPARED", XaXid(request.gid, request.branch_id), &unknown));
  }
  if (request.op == "rollback") return ResultOf(Rollback(request, conn, options));
  return BranchResult::Error("xa: unknown op '" + request.op + "'");
}

Result<XaRecoveryReport> RecoverPreparedXa(PGconn* conn, Client& coordinator,
                                           std::chrono::seconds min_age,
                                           const PgXaOptions& options) {
  const std::string sql =
      "select gid from pg_prepared_xacts where database = current_database() and prepared < now() "
      "- interval '" +
      std::to_string(min_age.count()) + " seconds' order by prepared";
  PgResult res(PQexec(conn, sql.c_str()));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
    return PgError(conn, res.get(), "xa: list prepared transactions");
  }
  XaRecoveryReport report;
  for (int i = 0; i < PQntuples(res.get()); ++i) {
    const std::string xid = PQgetvalue(res.get(), i, 0);
    const size_t dash = xid.rfind('-');
    if (dash == std::string::npos || dash == 0 || dash + 1 == xid.size()) {
      ++report.undecided;
      continue;
    }
    BranchRequest r;
    r.gid = xid.substr(0, dash);
    r.branch_id = xid.substr(dash + 1);
    Result<TransactionInfo> info = coordinator.Query(r.gid);
    if (!info.ok() || info->trans_type != "xa") {
      ++report.undecided;
      continue;
    }
    bool unknown = false;
    if (info->status == "succeed" || info->status == "submitted") {
      if (ExecXid(conn, "COMMIT PREPARED", xid, &unknown).ok()) ++report.committed;
    } else if (info->status == "failed" || info->status == "aborting") {
      if (Rollback(r, conn, options).ok()) ++report.rolled_back;
    } else {
      ++report.undecided;
    }
  }
  return report;
}

}  // namespace dtx
