#include "api/trans_build.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <random>

#include "core/machine.h"
#include "http/client.h"

namespace dtx::api {

namespace {

Status ValidateUrl(std::string_view field, const std::string& url) {
  if (url.empty()) return Status::Ok();
  auto parsed = http::ParseHttpUrl(url);
  if (!parsed.ok()) {
    return Status::InvalidArgument(
        fmt::format("{}: '{}' is not a supported URL ({}); dtx calls http:// participants", field,
                    url, parsed.status().message()));
  }
  return Status::Ok();
}

Status ValidateMsgCustomData(const std::string& custom_data) {
  return core::ParseMsgDelayS(custom_data).status();
}

// One payload per step (DTM's rule) and the http protocol only.
Status CheckStepsAndProtocol(const TransRequest& req, const char* kind) {
  const size_t n = req.steps.size();
  if (req.payloads && req.payloads->size() < n) {
    return Status::InvalidArgument(
        fmt::format("payloads: {} given for {} steps; a {} needs one payload per step",
                    req.payloads->size(), n, kind));
  }
  return CheckProtocol(req.protocol);
}

}  // namespace

Status CheckProtocol(const std::string& protocol) {
  if (!protocol.empty() && protocol != "http") {
    return Status::Unimplemented(
        fmt::format("protocol '{}' is not supported yet; use http", protocol));
  }
  return Status::Ok();
}

std::string NewGid() {
  static constexpr char kAlphabet[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng{
      std::random_device{}() ^
      (static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) << 1)};
  // 8 chars of time (ms, base62), 14 chars of randomness mixed with a process-wide counter.
  uint64_t t = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count());
  uint64_t r1 = rng() ^ (counter.fetch_add(1, std::memory_order_relaxed) * 0x9E3779B97F4A7C15ull);
  uint64_t r2 = rng();
  std::string out(22, '0');
  for (int i = 7; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kAlphabet[t % 62];
    t /= 62;
  }
  for (size_t i = 8; i < 22; ++i) {
    uint64_t& src = i < 15 ? r1 : r2;
    out[i] = kAlphabet[src % 62];
    src /= 62;
  }
  return out;
}

Result<core::TransSnapshot> BuildSaga(const TransRequest& req) {
  const size_t n = req.steps.size();
  if (Status s = CheckStepsAndProtocol(req, "saga"); !s.ok()) return s;
  auto layout = core::ParseSagaLayout(req.custom_data, n);
  if (!layout.ok()) return layout.status();
  core::TransSnapshot snap;
  core::GlobalTrans& g = snap.global;
  g.gid = req.gid;
  g.trans_type = core::TransType::kSaga;
  g.protocol = "http";
  g.custom_data = req.custom_data;
  g.options = req.options;
  g.options.wait_result = false;  // per request, not stored behaviour
  snap.branches.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    const StepSpec& step = req.steps[i];
    if (Status s = ValidateUrl(fmt::format("steps[{}].action", i), step.action); !s.ok()) return s;
    if (Status s = ValidateUrl(fmt::format("steps[{}].compensate", i), step.compensate); !s.ok()) {
      return s;
    }
    std::string payload =
        req.payloads ? (*req.payloads)[i] : (step.data ? *step.data : std::string());
    std::string id = fmt::format("{:02d}", i + 1);
    core::BranchRow comp;
    comp.branch_id = id;
    comp.op = "compensate";
    comp.url = step.compensate;
    comp.bin_data = payload;
    core::BranchRow action;
    action.branch_id = id;
    action.op = "action";
    action.url = step.action;
    action.bin_data = std::move(payload);
    snap.branches.push_back(std::move(comp));
    snap.branches.push_back(std::move(action));
  }
  return snap;
}

core::OptionsPatch PatchFrom(const TransRequest& req) {
  core::OptionsPatch p;
  const core::TransOptions& o = req.options;
  if (req.has_timeout_to_fail) p.timeout_to_fail_s = o.timeout_to_fail_s;
  if (req.has_request_timeout) p.request_timeout_s = o.request_timeout_s;
  if (req.has_retry_interval) p.retry_interval_s = o.retry_interval_s;
  if (req.has_retry_limit) p.retry_limit = o.retry_limit;
  if (req.has_branch_headers) p.branch_headers = o.branch_headers;
  if (req.has_concurrent) p.concurrent = o.concurrent;
  return p;
}

Result<core::TransSnapshot> BuildMsg(const TransRequest& req, const TopicMap& topics) {
  const size_t n = req.steps.size();
  if (Status s = CheckStepsAndProtocol(req, "msg"); !s.ok()) return s;
  if (Status s = ValidateMsgCustomData(req.custom_data); !s.ok()) return s;
  if (Status s = ValidateUrl("query_prepared", req.query_prepared); !s.ok()) return s;
  core::TransSnapshot snap;
  core::GlobalTrans& g = snap.global;
  g.gid = req.gid;
  g.trans_type = core::TransType::kMsg;
  g.protocol = "http";
  g.custom_data = req.custom_data;
  g.query_prepared = req.query_prepared;
  g.options = req.options;
  g.options.wait_result = false;
  for (size_t i = 0; i < n; ++i) {
    const StepSpec& step = req.steps[i];
    std::string payload =
        req.payloads ? (*req.payloads)[i] : (step.data ? *step.data : std::string());
    const std::string id = fmt::format("{:02d}", i + 1);
    if (step.action.starts_with(kTopicScheme)) {
      // Expanded now, at creation, into one row per current subscriber (§1.9): 01-01, 01-02, ...
      // for two or more, plain 01 for exactly one.
      auto it = topics.find(step.action.substr(kTopicScheme.size()));
      if (it == topics.end() || it->second.empty()) {
        return Status::InvalidArgument("topic not found");
      }
      const auto& subs = it->second;
      for (size_t j = 0; j < subs.size(); ++j) {
        if (Status s = ValidateUrl(fmt::format("steps[{}].action ({}) subscriber", i, step.action),
                                   subs[j].url);
            !s.ok()) {
          return s;
        }
        core::BranchRow row;
        row.branch_id = subs.size() == 1 ? id : fmt::format("{}-{:02d}", id, j + 1);
        row.op = "action";
        row.url = subs[j].url;
        row.bin_data = payload;
        snap.branches.push_back(std::move(row));
      }
      continue;
    }
    if (Status s = ValidateUrl(fmt::format("steps[{}].action", i), step.action); !s.ok()) return s;
    core::BranchRow row;
    row.branch_id = id;
    row.op = "action";
    row.url = step.action;
    row.bin_data = std::move(payload);
    snap.branches.push_back(std::move(row));
  }
  return snap;
}

Result<std::vector<core::BranchRow>> BuildRegisteredRows(
    const std::vector<std::pair<std::string, std::string>>& kv, std::string& gid,
    core::TransType& type) {
  auto get = [&](std::string_view key) {
    std::string value;
    for (const auto& [k, v] : kv) {
      if (k == key) value = v;
    }
    return value;
  };
  gid = get("gid");
  if (Status s = core::ValidateGid(gid); !s.ok()) {
    gid.clear();  // not echoed back
    return s;
  }
  std::string tt = get("trans_type");
  auto parsed = core::ParseTransType(tt);
  if (!parsed)
    return Status::InvalidArgument(fmt::format("unknown trans_type '{}'", tt.substr(0, 64)));
  type = *parsed;
  if (type == core::TransType::kWorkflow) {
    return Status::Unimplemented("workflow is not supported yet");
  }
  if (type != core::TransType::kTcc && type != core::TransType::kXa) {
    return Status::InvalidArgument(
        fmt::format("registerBranch is for tcc and xa, not '{}'", core::ToString(type)));
  }
  std::string branch_id = get("branch_id");
  if (branch_id.empty() || branch_id.size() > core::kMaxBranchIdBytes) {
    return Status::InvalidArgument(
        fmt::format("branch_id is required and at most {} bytes", core::kMaxBranchIdBytes));
  }
  std::string data = get("data");
  if (data.size() > core::kMaxBinDataBytes) {
    return Status::InvalidArgument(fmt::format("data is over {} bytes", core::kMaxBinDataBytes));
  }
  std::vector<core::BranchRow> rows(2);
  rows[0].branch_id = rows[1].branch_id = branch_id;
  rows[0].bin_data = rows[1].bin_data = data;
  if (type == core::TransType::kTcc) {
    rows[0].op = "cancel";
    rows[0].url = get("cancel");
    rows[1].op = "confirm";
    rows[1].url = get("confirm");
  } else {
    rows[0].op = "rollback";
    rows[1].op = "commit";
    rows[0].url = rows[1].url = get("url");
  }
  for (const auto& r : rows) {
    if (r.url.size() > core::kMaxUrlBytes) {
      return Status::InvalidArgument(
          fmt::format("{} url is over {} bytes", r.op, core::kMaxUrlBytes));
    }
    if (Status s = ValidateUrl(r.op, r.url); !s.ok()) return s;
  }
  return rows;
}

}  // namespace dtx::api
