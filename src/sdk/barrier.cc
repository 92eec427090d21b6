// The barrier algorithm (PROTOCOL.md §4.3-4.5), independent of the database: it talks to the
// connection only through BarrierDb. The adapters are in barrier_sqlite.cc and barrier_pg.cc (the
// latter, with Call(PgDb&), in the optional PostgreSQL part dtx::pg), the table-name checks in
// barrier_names.cc.
#include "dtx/barrier.h"

#include <cstdio>
#include <string>

#include "sdk/barrier_internal.h"

namespace dtx {

namespace {

// Code points in `s` if it is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at
// most U+10FFFF), else -1.
long Utf8Chars(std::string_view s) {
  long chars = 0;
  size_t i = 0;
  while (i < s.size()) {
    auto b = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    unsigned cp = 0;
    if (b < 0x80) {
      len = 1;
      cp = b;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2;
      cp = b & 0x1Fu;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3;
      cp = b & 0x0Fu;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4;
      cp = b & 0x07u;
    } else {
      return -1;
    }
    if (i + len > s.size()) return -1;
    for (size_t k = 1; k < len; ++k) {
      auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return -1;
      cp = (cp << 6) | (c & 0x3Fu);
    }
    static constexpr unsigned kMinForLen[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLen[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    i += len;
    ++chars;
  }
  return chars;
}

Status CheckField(std::string_view field, std::string_view value, size_t max_chars) {
  if (value.empty()) return Status::InvalidArgument(std::string(field) + " is empty");
  if (value.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument(std::string(field) + " contains a NUL byte");
  }
  long chars = Utf8Chars(value);
  if (chars < 0) return Status::InvalidArgument(std::string(field) + " is not valid UTF-8");
  if (static_cast<size_t>(chars) > max_chars) {
    return Status::InvalidArgument(std::string(field) + " has " + std::to_string(chars) +
                                   " characters; its column holds at most " +
                                   std::to_string(max_chars));
  }
  return Status::Ok();
}

// The forward op whose row an undo op inserts first (§4.3); "" for forward ops.
std::string_view OriginOp(std::string_view op) {
  if (op == "cancel") return "try";
  if (op == "compensate" || op == "rollback") return "action";
  return {};
}

std::string FormatBarrierId(int n) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%02d", n);
  return buf;
}

}  // namespace

Status ValidateBarrierRow(const BarrierRow& row) {
  struct Field {
    std::string_view name;
    std::string_view value;
    size_t max_chars;
  };
  const Field fields[] = {
      {"trans_type", row.trans_type, kBarrierTransTypeMaxChars},
      {"gid", row.gid, kBarrierGidMaxChars},
      {"branch_id", row.branch_id, kBarrierBranchIdMaxChars},
      {"op", row.op, kBarrierOpMaxChars},
      {"barrier_id", row.barrier_id, kBarrierIdMaxChars},
      {"reason", row.reason, kBarrierReasonMaxChars},
  };
  for (const Field& f : fields) {
    if (Status s = CheckField(f.name, f.value, f.max_chars); !s.ok()) return s;
  }
  return Status::Ok();
}

Result<BranchBarrier> BranchBarrier::Create(std::string trans_type, std::string gid,
                                            std::string branch_id, std::string op) {
  // The widest row this barrier writes has reason = op and barrier_id = "01": checking it checks
  // the four identity fields against their columns.
  Status s = ValidateBarrierRow({trans_type, gid, branch_id, op, "01", op});
  if (!s.ok()) return Status::InvalidArgument("branch barrier: " + s.message());
  return BranchBarrier(std::move(trans_type), std::move(gid), std::move(branch_id), std::move(op));
}

Result<BranchBarrier> BranchBarrier::FromRequest(const BranchRequest& r) {
  return Create(r.trans_type, r.gid, r.branch_id, r.op);
}

Result<BranchBarrier> BranchBarrier::ForMsg(std::string gid) {
  return Create(std::string(kMsgOp), std::move(gid), std::string(kMsgBranchId),
                std::string(kMsgOp));
}

Status BranchBarrier::Call(BarrierDb& db, const std::function<Status()>& business) {
  DTX_ASSERT(business != nullptr);
  // The id is taken even if this Call fails, so that the ids of a handler's Calls depend only on
  // their order (§4.4).
  const std::string barrier_id = FormatBarrierId(++barrier_id_);
  const std::string_view origin = OriginOp(op_);
  const BarrierRow current_row{trans_type_, gid_, branch_id_, op_, barrier_id, op_};
  if (Status s = ValidateBarrierRow(current_row); !s.ok()) return s;

  if (Status s = db.Begin(); !s.ok()) return s;
  int origin_affected = 0;
  if (!origin.empty()) {
    Result<int> affected =
        db.InsertIgnore({trans_type_, gid_, branch_id_, origin, barrier_id, op_});
    if (!affected.ok()) {
      db.Rollback();
      return affected.status();
    }
    origin_affected = *affected;
  }
  Result<int> current_affected = db.InsertIgnore(current_row);
  if (!current_affected.ok()) {
    db.Rollback();
    return current_affected.status();
  }
  if (op_ == kMsgOp && *current_affected == 0) {
    // The check-back already inserted this key with reason "rollback": the message is decided.
    db.Rollback();
    return Status::AlreadyExists(std::string(kDuplicatedMessage));
  }
  if ((!origin.empty() && origin_affected == 1)  // null compensation: the forward op never ran
      || *current_affected == 0) {               // duplicate, or a forward op after its undo
    return db.Commit();                          // the skipped call still ends its transaction
  }

  Status result;
  try {
    result = business();
  } catch (...) {
    db.Rollback();
    throw;
  }
  if (!result.ok()) {
    db.Rollback();
    return result;
  }
  return db.Commit();
}

Status BranchBarrier::Call(SqliteDb& db, const std::function<Status(SqliteTx&)>& business) {
  DTX_ASSERT(business != nullptr);
  SqliteTx tx{db.handle()};
  return Call(static_cast<BarrierDb&>(db), [&] { return business(tx); });
}

Status BranchBarrier::QueryPrepared(BarrierDb& db) {
  if (db.InTransaction()) {
    return Status::InvalidArgument(
        "QueryPrepared: the connection is inside a transaction; the check-back insert must "
        "commit on its own");
  }
  static constexpr std::string_view kFirstBarrierId = "01";
  static constexpr std::string_view kRollbackReason = "rollback";
  Result<int> inserted =
      db.InsertIgnore({trans_type_, gid_, kMsgBranchId, kMsgOp, kFirstBarrierId, kRollbackReason});
  if (!inserted.ok()) return inserted.status();
  Result<std::string> reason = db.SelectReason(gid_, kMsgBranchId, kMsgOp, kFirstBarrierId);
  if (!reason.ok()) {
    if (reason.status().code() == Code::kNotFound) {
      return Status::Internal("QueryPrepared: the check-back row of gid " + gid_ +
                              " vanished after its insert (deleted concurrently?)");
    }
    return reason.status();
  }
  if (*reason == kRollbackReason) {
    return Status::Conflict("FAILURE: the local transaction of gid " + gid_ +
                            " did not commit; the message is rolled back");
  }
  if (*reason == kMsgOp) return Status::Ok();
  return Status::Internal("QueryPrepared: unexpected reason '" + *reason +
                          "' in the check-back row of gid " + gid_);
}

BranchResult BarrierBranchResult(const Status& status) {
  switch (status.code()) {
    case Code::kOk:
      return BranchResult::Success();
    case Code::kConflict:
      return BranchResult::Failure(status.message());
    case Code::kOngoing:
      return BranchResult::Ongoing();
    default:
      return BranchResult::Error(status.ToString());
  }
}

}  // namespace dtx
