#include "ops/admin.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <random>

#include "core/notify.h"
#include "core/retry_policy.h"
#include "engine/store_await.h"

// GCC 12: a false -Wmismatched-new-delete for Asio's awaitable frames (see engine_internal.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dtx::ops {

namespace json = boost::json;
using boost::asio::awaitable;
using engine::AwaitStore;

namespace {

constexpr const char* kAuditCat = "dtx-audit";
constexpr const char* kResolvedCat = "dtx-resolved";

std::string GidAuditCat(const std::string& gid) { return std::string(kAuditCat) + ":" + gid; }

std::string EncodeAudit(const AuditRecord& r) {
  json::object o{{"time_ms", r.time_ms},
                 {"who", r.who},
                 {"gid", r.gid},
                 {"action", r.action},
                 {"reason", r.reason},
                 {"status_before", r.status_before},
                 {"status_after", r.status_after}};
  if (!r.branch_id.empty()) o["branch_id"] = r.branch_id;
  if (!r.op.empty()) o["op"] = r.op;
  return json::serialize(o);
}

AuditRecord DecodeAudit(const store::KvRow& row) {
  AuditRecord r;
  r.id = row.id;
  boost::system::error_code ec;
  json::value v = json::parse(row.v, ec);
  if (ec || !v.is_object()) return r;
  const json::object& o = v.get_object();
  auto str = [&](const char* k) {
    const json::value* x = o.if_contains(k);
    return x && x->is_string() ? std::string(x->get_string()) : std::string();
  };
  if (const json::value* t = o.if_contains("time_ms"); t && t->is_int64()) {
    r.time_ms = t->get_int64();
  }
  r.who = str("who");
  r.gid = str("gid");
  r.action = str("action");
  r.reason = str("reason");
  r.status_before = str("status_before");
  r.status_after = str("status_after");
  r.branch_id = str("branch_id");
  r.op = str("op");
  return r;
}

std::optional<engine::Engine::OperatorAction> ParseAction(const std::string& a) {
  using A = engine::Engine::OperatorAction;
  if (a == "retry") return A::kRetry;
  if (a == "stop") return A::kStop;
  if (a == "abort") return A::kAbort;
  if (a == "skip") return A::kSkip;
  return std::nullopt;
}

// Whether g's custom_data may list business keys (the API stores them under this exact name,
// core::WithKeySpec): no JSON parse for the others.
bool MayListKeys(const core::GlobalTrans& g) {
  return g.custom_data.find("\"business_keys\"") != std::string::npos;
}

}  // namespace

AdminService::AdminService(engine::Engine& engine, store::Store& store, Clock& clock,
                           Metrics* metrics, AdminOptions options)
    : engine_(engine), store_(store), clock_(clock), metrics_(metrics), options_(options) {
  options_.max_key_reads = std::max(1, options_.max_key_reads);
}

AdminRow AdminService::Classify(core::GlobalTrans g) const {
  AdminRow row;
  core::RedactNotifySecret(g);  // what an operator sees never carries a notification's secret
  const core::Settings& settings = engine_.options().settings;
  const int64_t i0 = core::InitialIntervalMs(g.options, settings);
  for (int64_t v = g.next_cron_interval_ms; i0 > 0 && v >= 2 * i0; v /= 2) ++row.retries;
  if (!core::IsFinal(g.status)) {
    const int64_t timeout_ms = core::TimeoutToFailMs(g, settings);
    const bool overdue = timeout_ms > 0 && clock_.NowMs() > g.create_time_ms + timeout_ms;
    row.stuck = overdue || row.retries >= options_.alert_retry_limit;
  }
  row.trans = std::move(g);
  return row;
}

awaitable<bool> AdminService::IsResolved(const std::string& gid) {
  std::string cat = kResolvedCat;
  std::string key = gid;
  auto r = co_await AwaitStore<Result<std::optional<store::KvRow>>>(
      [&](auto cb) { store_.KvGet(std::move(cat), std::move(key), std::move(cb)); });
  co_return r.ok() && r->has_value();
}

awaitable<Result<AdminPage>> AdminService::List(AdminListQuery q) {
  if (q.limit < 1 || q.limit > kMaxAdminListLimit) {
    co_return Status::InvalidArgument(fmt::format("limit must be 1..{}", kMaxAdminListLimit));
  }
  if (q.position < 0) co_return Status::InvalidArgument("position must be >= 0");
  const bool filtered = q.stuck || q.waiting || !q.gid_prefix.empty() || q.resolved;
  AdminPage page;
  int64_t before = q.position;
  for (;;) {
    store::ListQuery sq;
    sq.status = q.status;
    sq.trans_type = q.trans_type;
    sq.create_time_start_ms = q.created_after_ms;
    sq.create_time_end_ms = q.created_before_ms;
    sq.before_id = before;
    sq.limit = filtered ? store::kMaxListLimit : q.limit;
    auto r = co_await engine_.List(sq);
    if (!r.ok()) co_return r.status();
    int64_t last_id = 0;
    bool stop = false;
    for (core::GlobalTrans& g : r->transactions) {
      ++page.scanned;
      last_id = g.id;
      if (!q.gid_prefix.empty() && !g.gid.starts_with(q.gid_prefix)) continue;
      if (q.waiting && (core::IsFinal(g.status) || !MayListKeys(g))) continue;
      AdminRow row = Classify(std::move(g));
      if (q.stuck && !row.stuck) continue;
      if (!core::IsFinal(row.trans.status) && MayListKeys(row.trans)) {
        auto keys = co_await engine_.KeyStateOf(row.trans);
        if (!keys.ok()) co_return keys.status();
        row.keys = std::move(*keys);
        // The budget: the rest of the stored rows are for the next call.
        stop = ++page.key_reads >= options_.max_key_reads;
      }
      const bool keep = !q.waiting || (row.keys && !row.keys->held);
      if (keep && (q.resolved || row.stuck || row.trans.status == core::GlobalStatus::kFailed)) {
        row.resolved = co_await IsResolved(row.trans.gid);
      }
      if (keep && !(q.resolved && *q.resolved != row.resolved)) {
        page.rows.push_back(std::move(row));
        stop = stop || static_cast<int>(page.rows.size()) == q.limit;
      }
      if (stop) break;
    }
    if (stop) {
      page.next_position = last_id;
      break;
    }
    if (r->next_before_id == 0) break;  // nothing more stored
    before = r->next_before_id;
    if (page.scanned >= kMaxScanRows) {
      page.next_position = before;  // a short page: continue from here
      break;
    }
  }
  co_return page;
}

awaitable<Result<std::optional<TransDetail>>> AdminService::Show(std::string gid) {
  auto loaded = co_await engine_.Query(gid);
  if (!loaded.ok()) co_return loaded.status();
  if (!loaded->has_value()) co_return std::optional<TransDetail>();
  TransDetail d;
  d.branches = std::move((*loaded)->branches);
  d.row = Classify(std::move((*loaded)->global));
  auto keys = co_await engine_.KeyStateOf(d.row.trans);
  if (!keys.ok()) co_return keys.status();
  d.row.keys = std::move(*keys);
  auto attempts = co_await AwaitStore<Result<std::vector<store::AttemptRow>>>(
      [&](auto cb) { store_.LoadAttempts(gid, std::move(cb)); });
  d.attempts.resize(d.branches.size());
  if (attempts.ok()) {
    for (store::AttemptRow& a : *attempts) {
      for (size_t i = 0; i < d.branches.size(); ++i) {
        if (d.branches[i].branch_id == a.branch_id && d.branches[i].op == a.op) {
          d.attempts[i].push_back(std::move(a.attempt));
          break;
        }
      }
    }
  } else if (attempts.status().code() != Code::kUnimplemented) {
    co_return attempts.status();
  }
  auto audit = co_await Audit(gid, 100, 0);
  if (!audit.ok()) co_return audit.status();
  d.audit = std::move(*audit);
  std::string cat = kResolvedCat;
  auto mark = co_await AwaitStore<Result<std::optional<store::KvRow>>>(
      [&](auto cb) { store_.KvGet(std::move(cat), gid, std::move(cb)); });
  if (!mark.ok()) co_return mark.status();
  if (mark->has_value()) {
    d.resolved = DecodeAudit(**mark);
    d.row.resolved = true;
  }
  co_return std::optional<TransDetail>(std::move(d));
}

awaitable<Result<std::vector<AuditRecord>>> AdminService::Audit(std::string gid, int limit,
                                                                int64_t position) {
  if (limit < 1 || limit > kMaxAuditLimit) {
    co_return Status::InvalidArgument(fmt::format("limit must be 1..{}", kMaxAuditLimit));
  }
  if (position < 0) co_return Status::InvalidArgument("position must be >= 0");
  std::string cat = gid.empty() ? std::string(kAuditCat) : GidAuditCat(gid);
  auto page = co_await engine_.ScanKv(std::move(cat), position, limit);
  if (!page.ok()) co_return page.status();
  std::vector<AuditRecord> out;
  out.reserve(page->rows.size());
  for (const store::KvRow& row : page->rows) out.push_back(DecodeAudit(row));
  co_return out;
}

awaitable<Status> AdminService::Record(AuditRecord record) {
  // A unique key per record: the time, then a process-wide sequence and a random part, so that
  // records written by several coordinators at once do not collide.
  static std::atomic<uint64_t> seq{0};
  static const uint64_t salt = static_cast<uint64_t>(std::random_device{}()) << 32 |
                               static_cast<uint64_t>(std::random_device{}());
  const std::string key = fmt::format("{:013d}-{:016x}-{}", record.time_ms, salt, seq.fetch_add(1));
  const std::string value = EncodeAudit(record);
  const int64_t now = record.time_ms;
  for (std::string cat : {std::string(kAuditCat), GidAuditCat(record.gid)}) {
    Status st = co_await AwaitStore<Status>(
        [&](auto cb) { store_.KvPut(std::move(cat), key, value, 0, now, std::move(cb)); });
    if (!st.ok()) co_return st;
  }
  co_return Status::Ok();
}

awaitable<Result<ActionResult>> AdminService::Resolve(const ActionRequest& r,
                                                      const core::GlobalTrans& g) {
  if (g.status == core::GlobalStatus::kSucceed) {
    co_return Status::Conflict("resolve refused: the transaction succeeded");
  }
  AuditRecord rec;
  rec.time_ms = clock_.NowMs();
  rec.who = r.who;
  rec.gid = r.gid;
  rec.action = "resolve";
  rec.reason = r.reason;
  rec.status_before = rec.status_after = std::string(core::ToString(g.status));
  const std::string value = EncodeAudit(rec);
  Status st = co_await AwaitStore<Status>(
      [&](auto cb) { store_.KvPut(kResolvedCat, r.gid, value, 0, rec.time_ms, std::move(cb)); });
  if (st.code() == Code::kConflict) co_return Status::Conflict("already resolved");
  if (!st.ok()) co_return st;
  if (Status a = co_await Record(rec); !a.ok()) co_return a;
  co_return ActionResult{rec.status_before, rec.status_after};
}

awaitable<Result<ActionResult>> AdminService::Act(ActionRequest r) {
  if (r.reason.empty()) co_return Status::InvalidArgument("a reason is required");
  if (r.reason.size() > kMaxReasonBytes) {
    co_return Status::InvalidArgument(fmt::format("reason is over {} bytes", kMaxReasonBytes));
  }
  if (r.gid.empty() || r.gid.size() > core::kMaxGidBytes) {
    co_return Status::InvalidArgument("gid is required (at most 128 bytes)");
  }
  std::optional<core::GlobalStatus> expect;
  if (r.expect_status) {
    expect = core::ParseGlobalStatus(*r.expect_status);
    if (!expect) {
      co_return Status::InvalidArgument(
          fmt::format("expect_status: unknown status '{}'", r.expect_status->substr(0, 32)));
    }
  }
  const auto action = ParseAction(r.action);
  if (!action && r.action != "resolve") {
    co_return Status::InvalidArgument(fmt::format(
        "unknown action '{}' (retry, stop, abort, skip, resolve)", r.action.substr(0, 32)));
  }
  auto loaded = co_await engine_.Query(r.gid);
  if (!loaded.ok()) co_return loaded.status();
  if (!loaded->has_value()) {
    co_return Status::NotFound(fmt::format("no transaction with gid '{}'", r.gid));
  }
  const core::TransSnapshot& snap = **loaded;
  if (expect && *expect != snap.global.status) {
    co_return Status::Conflict(fmt::format("the transaction is {}, not {} as expected",
                                           core::ToString(snap.global.status),
                                           core::ToString(*expect)));
  }
  Result<ActionResult> result = Status::Internal("unset");
  if (!action) {
    result = co_await Resolve(r, snap.global);
  } else {
    engine::Engine::OperatorRequest op;
    op.gid = r.gid;
    op.action = *action;
    op.expect_status = expect ? expect : snap.global.status;
    op.reason = r.reason;
    if (*action == engine::Engine::OperatorAction::kSkip) {
      if (r.branch_id.empty()) co_return Status::InvalidArgument("skip needs a branch_id");
      op.branch_id = r.branch_id;
      op.op = r.op;
      if (op.op.empty()) {  // the branch's one unfinished op
        int found = 0;
        for (const auto& b : snap.branches) {
          if (b.branch_id == r.branch_id && b.status == core::BranchStatus::kPrepared) {
            op.op = b.op;
            ++found;
          }
        }
        if (found > 1) {
          co_return Status::InvalidArgument(
              fmt::format("branch {} has {} unfinished ops: name one with op", r.branch_id, found));
        }
        if (found == 0) op.op = "action";  // reported as not found / not unfinished below
      }
      r.op = op.op;
    }
    auto out = co_await engine_.Operate(std::move(op));
    if (!out.ok()) co_return out.status();
    result = ActionResult{std::string(core::ToString(out->before)),
                          std::string(core::ToString(out->after))};
    AuditRecord rec;
    rec.time_ms = clock_.NowMs();
    rec.who = r.who;
    rec.gid = r.gid;
    rec.action = r.action;
    rec.reason = r.reason;
    rec.status_before = result->status_before;
    rec.status_after = result->status_after;
    rec.branch_id = r.branch_id;
    rec.op = r.op;
    if (Status a = co_await Record(std::move(rec)); !a.ok()) {
      spdlog::error("gid {}: operator {} by {} done, but its audit record failed: {}", r.gid,
                    r.action, r.who, a.ToString());
      co_return a;
    }
  }
  if (result.ok()) {
    spdlog::info("gid {}: operator action {} by {}", r.gid, r.action, r.who);
    if (metrics_) metrics_->RecordOperatorAction(r.action);
  }
  co_return result;
}

}  // namespace dtx::ops
