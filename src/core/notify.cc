// The notify state machine (core/notify.h, docs/notifications.md) and the codec of its state.
//
// Submitted ("pending"): one attempt at a time. The attempt of index k (0-based, in the current
// schedule) is due at cycle_start + schedule[0] for k = 0, else at the end of attempt k-1 plus
// schedule[k]. A success ends it (succeed); a failed attempt is recorded together with the next
// wake-up in one write, or ends it (failed, kNotifyExhausted) when the schedule has no step left.
// The due time is derived from the stored progress, not from next_cron_time: a round that finds an
// attempt overdue (a crash during the attempt, a late claim) makes it at once, so none is skipped.
// Prepared (two-phase): checked back like a msg once timeout_to_fail has passed since creation.
#include "core/notify.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <vector>

#include "core/machine_internal.h"
#include "util/assert.h"

namespace dtx::core {

namespace json = boost::json;

namespace {

constexpr int64_t kS = 1000;
constexpr int64_t kM = 60 * kS;
constexpr int64_t kH = 60 * kM;

int64_t GetInt(const json::object& o, const char* key) {
  if (const json::value* v = o.if_contains(key); v && v->is_int64()) return v->get_int64();
  return 0;
}

std::string GetString(const json::object& o, const char* key) {
  if (const json::value* v = o.if_contains(key); v && v->is_string()) {
    return std::string(v->get_string());
  }
  return {};
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

Result<std::vector<int64_t>> NotifyPreset(std::string_view name) {
  // Sources in docs/notifications.md ("Presets").
  if (name == "wechat") {
    return std::vector<int64_t>{0,       15 * kS, 15 * kS, 30 * kS, 3 * kM,  10 * kM,
                                20 * kM, 30 * kM, 30 * kM, 30 * kM, 60 * kM, 3 * kH,
                                3 * kH,  3 * kH,  6 * kH,  6 * kH};
  }
  if (name == "alipay") {
    return std::vector<int64_t>{0, 2 * kM, 10 * kM, 10 * kM, 1 * kH, 2 * kH, 6 * kH, 15 * kH};
  }
  if (name == "svix") {
    return std::vector<int64_t>{0, 5 * kS, 5 * kM, 30 * kM, 2 * kH, 5 * kH, 10 * kH, 10 * kH};
  }
  if (name == "rocketmq") {
    return std::vector<int64_t>{0,       10 * kS, 30 * kS, 1 * kM, 2 * kM, 3 * kM,
                                4 * kM,  5 * kM,  6 * kM,  7 * kM, 8 * kM, 9 * kM,
                                10 * kM, 20 * kM, 30 * kM, 1 * kH, 2 * kH};
  }
  return Status::InvalidArgument(fmt::format(
      "schedule: unknown preset '{}' (wechat, alipay, svix, rocketmq, or an array of seconds)",
      name));
}

std::string EncodeNotifyState(const NotifyState& s) {
  json::object o;
  if (!s.preset.empty()) o["preset"] = s.preset;
  json::array sched;
  for (int64_t ms : s.schedule_ms) sched.emplace_back(ms);
  o["schedule_ms"] = std::move(sched);
  json::object rule;
  switch (s.success.kind) {
    case SuccessRule::Kind::kStatus2xx:
      rule["status"] = "2xx";
      break;
    case SuccessRule::Kind::kBody:
      rule["body"] = s.success.value;
      break;
    case SuccessRule::Kind::kJson:
      rule["json"] = s.success.field;
      rule["equals"] = s.success.value;
      break;
  }
  o["success"] = std::move(rule);
  o["timeout_ms"] = s.timeout_ms;
  if (!s.secret.empty()) o["secret"] = s.secret;
  o["request_hash"] = s.request_hash;
  o["cycle_start_ms"] = s.cycle_start_ms;
  o["cycle_attempts"] = s.cycle_attempts;
  o["total_attempts"] = s.total_attempts;
  o["last_attempt_end_ms"] = s.last_attempt_end_ms;
  json::array log;
  for (const NotifyAttempt& a : s.log) {
    log.emplace_back(json::object{{"n", a.n},
                                  {"time_ms", a.time_ms},
                                  {"http_status", a.http_status},
                                  {"latency_ms", a.latency_ms},
                                  {"error", a.error},
                                  {"response", a.response}});
  }
  o["log"] = std::move(log);
  return json::serialize(o);
}

Result<NotifyState> DecodeNotifyState(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return Status::InvalidArgument("notify state: not a JSON object");
  const json::object& o = v.get_object();
  NotifyState s;
  s.preset = GetString(o, "preset");
  if (const json::value* p = o.if_contains("schedule_ms"); p && p->is_array()) {
    for (const json::value& e : p->get_array()) {
      if (!e.is_int64()) return Status::InvalidArgument("notify state: bad schedule");
      s.schedule_ms.push_back(e.get_int64());
    }
  }
  if (s.schedule_ms.empty()) return Status::InvalidArgument("notify state: no schedule");
  if (const json::value* p = o.if_contains("success"); p && p->is_object()) {
    const json::object& r = p->get_object();
    if (r.contains("body")) {
      s.success.kind = SuccessRule::Kind::kBody;
      s.success.value = GetString(r, "body");
    } else if (r.contains("json")) {
      s.success.kind = SuccessRule::Kind::kJson;
      s.success.field = GetString(r, "json");
      s.success.value = GetString(r, "equals");
    }
  }
  s.timeout_ms = GetInt(o, "timeout_ms");
  s.secret = GetString(o, "secret");
  s.request_hash = GetString(o, "request_hash");
  s.cycle_start_ms = GetInt(o, "cycle_start_ms");
  s.cycle_attempts = GetInt(o, "cycle_attempts");
  s.total_attempts = GetInt(o, "total_attempts");
  s.last_attempt_end_ms = GetInt(o, "last_attempt_end_ms");
  if (const json::value* p = o.if_contains("log"); p && p->is_array()) {
    for (const json::value& e : p->get_array()) {
      if (!e.is_object()) continue;
      const json::object& a = e.get_object();
      s.log.push_back(NotifyAttempt{
          GetInt(a, "n"), GetInt(a, "time_ms"), static_cast<int>(GetInt(a, "http_status")),
          GetInt(a, "latency_ms"), GetString(a, "error"), GetString(a, "response")});
    }
  }
  return s;
}

bool IsNotifySuccess(const SuccessRule& rule, int http_status, std::string_view body) {
  if (http_status <= 0) return false;
  switch (rule.kind) {
    case SuccessRule::Kind::kStatus2xx:
      return http_status >= 200 && http_status < 300;
    case SuccessRule::Kind::kBody:
      return http_status >= 200 && http_status < 300 && Trim(body) == rule.value;
    case SuccessRule::Kind::kJson: {
      if (http_status < 200 || http_status >= 300) return false;
      boost::system::error_code ec;
      json::value v = json::parse(body, ec);
      if (ec || !v.is_object()) return false;
      const json::value* f = v.get_object().if_contains(rule.field);
      if (!f) return false;
      if (f->is_string()) return f->get_string() == rule.value;
      return json::serialize(*f) == rule.value;  // numbers, booleans: their JSON text
    }
  }
  return false;
}

int64_t NotifyDueMs(const NotifyState& s, int64_t now_ms) {
  DTX_INVARIANT(
      s.cycle_attempts >= 0 && static_cast<size_t>(s.cycle_attempts) < s.schedule_ms.size(),
      "no attempt left in the schedule");
  const size_t k = static_cast<size_t>(s.cycle_attempts);
  if (k == 0) return (s.cycle_start_ms > 0 ? s.cycle_start_ms : now_ms) + s.schedule_ms[0];
  return s.last_attempt_end_ms + s.schedule_ms[k];
}

std::string_view NotifyApiStatus(const GlobalTrans& g) {
  switch (g.status) {
    case GlobalStatus::kPrepared:
      return "prepared";
    case GlobalStatus::kSubmitted:
    case GlobalStatus::kAborting:
      return "pending";
    case GlobalStatus::kSucceed:
      return "delivered";
    case GlobalStatus::kFailed:
      return g.rollback_reason == kNotifyExhausted ? "failed" : "aborted";
  }
  return "pending";
}

std::optional<GlobalStatus> NotifyStoredStatus(std::string_view api_status) {
  if (api_status == "pending") return GlobalStatus::kSubmitted;
  if (api_status == "delivered") return GlobalStatus::kSucceed;
  if (api_status == "failed" || api_status == "aborted") return GlobalStatus::kFailed;
  if (api_status == "prepared") return GlobalStatus::kPrepared;
  return std::nullopt;
}

void RedactNotifySecret(GlobalTrans& g) {
  if (g.trans_type != TransType::kNotify) return;
  Result<NotifyState> st = DecodeNotifyState(g.custom_data);
  if (!st.ok() || st->secret.empty()) return;
  st->secret = "(redacted)";
  g.custom_data = EncodeNotifyState(*st);
}

Result<NotifyState*> RoundNotifyState(Round& round, std::string_view custom_data) {
  if (round.notify && round.notify->text == custom_data) return &round.notify->state;
  Result<NotifyState> decoded = DecodeNotifyState(custom_data);
  if (!decoded.ok()) {
    round.notify.reset();
    return decoded.status();
  }
  CacheNotifyState(round, std::string(custom_data), std::move(*decoded));
  return &round.notify->state;
}

void CacheNotifyState(Round& round, std::string text, NotifyState state) {
  if (!round.notify) round.notify = std::make_shared<NotifyCache>();
  round.notify->text = std::move(text);
  round.notify->state = std::move(state);
}

void AppendNotifyAttempt(NotifyState& s, NotifyAttempt attempt) {
  s.log.push_back(std::move(attempt));
  if (s.log.size() > kMaxNotifyLog) {
    s.log.erase(s.log.begin(),
                s.log.begin() + static_cast<std::ptrdiff_t>(s.log.size() - kMaxNotifyLog));
  }
}

namespace {

class Notify {
 public:
  Notify(TransSnapshot& snap, Round& round, const Settings& settings, int64_t now_ms)
      : snap_(snap), round_(round), settings_(settings), now_ms_(now_ms), w_(snap, now_ms) {}

  Decision Run(const Event& ev) {
    DTX_INVARIANT(snap_.branches.size() == 1, "a notification has exactly one row");
    if (ev.kind == Event::Kind::kStart) {
      round_.in_flight.assign(1, 0);
      round_.parked.assign(1, 0);
      round_.in_flight_count = 0;
      round_.check_back_in_flight = false;
      round_.check_back_parked = false;
    }
    Result<NotifyState*> decoded = RoundNotifyState(round_, snap_.global.custom_data);
    if (!decoded.ok()) {
      // Not written by dtx (an operator's edit): it cannot be followed, so it ends here.
      Unflight(ev);
      if (round_.in_flight_count == 0) {
        w_.SetStatus(GlobalStatus::kFailed);
        w_.SetRollbackReason("unreadable notify state: " + decoded.status().message());
      }
      return EndDecision(snap_, round_, settings_, now_ms_, w_, calls_);
    }
    state_ = *decoded;  // the round's cache: changes below are encoded into it when dirty
    if (ev.kind == Event::Kind::kResult) {
      if (ev.branch_index == kCheckBackIndex) {
        OnCheckBack(ev);
      } else {
        OnAttempt(ev);
      }
    }
    Advance();
    if (dirty_) {
      std::string text = EncodeNotifyState(*state_);
      round_.notify->text = text;
      w_.SetCustomData(std::move(text));
    }
    return EndDecision(snap_, round_, settings_, now_ms_, w_, calls_);
  }

 private:
  void Unflight(const Event& ev) {
    if (ev.kind != Event::Kind::kResult) return;
    if (ev.branch_index == kCheckBackIndex) {
      round_.check_back_in_flight = false;
    } else {
      round_.in_flight[0] = 0;
    }
    round_.in_flight_count -= 1;
  }

  void OnCheckBack(const Event& ev) {
    switch (OnCheckBackResult(snap_, round_, w_, settings_, now_ms_, ev)) {
      case CheckBackDecision::kSubmit:
        w_.SetStatus(GlobalStatus::kSubmitted);
        state_->cycle_start_ms = now_ms_;
        dirty_ = true;
        return;
      case CheckBackDecision::kFail:
        w_.SetStatus(GlobalStatus::kFailed);
        w_.SetRollbackReason("aborted: the check-back answered FAILURE");
        return;
      case CheckBackDecision::kNone:
        return;
    }
  }

  void OnAttempt(const Event& ev) {
    DTX_INVARIANT(ev.branch_index == 0 && round_.in_flight[0], "result for a call not in flight");
    Unflight(ev);
    const bool ok = ev.result == CallClass::kSuccess;
    NotifyAttempt a;
    a.n = state_->total_attempts + 1;
    a.latency_ms = std::max<int64_t>(ev.latency_ms, 0);
    a.time_ms = now_ms_ - a.latency_ms;
    a.http_status = ev.http_status;
    if (ev.http_status > 0) {
      a.response = Truncate(ev.answer, kMaxNotifyResponseBytes);
      if (!ok) a.error = "not a success answer";
    } else if (!ok) {
      a.error = Truncate(ev.answer.empty() ? "no answer" : ev.answer, kMaxNotifyErrorBytes);
    }
    AppendNotifyAttempt(*state_, std::move(a));
    state_->total_attempts += 1;
    state_->cycle_attempts += 1;
    state_->last_attempt_end_ms = now_ms_;
    dirty_ = true;
    w_.RecordAttempt(0, ok ? CallClass::kSuccess : CallClass::kError, ev.answer);
    if (snap_.global.status != GlobalStatus::kSubmitted) return;  // an operator moved it
    if (ok) {
      w_.SetStatus(GlobalStatus::kSucceed);
    } else if (static_cast<size_t>(state_->cycle_attempts) >= state_->schedule_ms.size()) {
      w_.SetStatus(GlobalStatus::kFailed);
      w_.SetRollbackReason(std::string(kNotifyExhausted));
    }
  }

  void Advance() {
    switch (snap_.global.status) {
      case GlobalStatus::kPrepared:
        MaybeCheckBack(snap_, round_, w_, settings_, now_ms_, calls_);
        break;
      case GlobalStatus::kSubmitted:
        AdvanceAttempts();
        break;
      case GlobalStatus::kAborting:
        // Not a notify status, but an operator may set it: nothing to undo.
        if (round_.in_flight_count == 0) w_.SetStatus(GlobalStatus::kFailed);
        break;
      case GlobalStatus::kSucceed:
      case GlobalStatus::kFailed:
        break;
    }
  }

  void AdvanceAttempts() {
    if (round_.in_flight_count > 0) return;
    if (static_cast<size_t>(state_->cycle_attempts) >= state_->schedule_ms.size()) {
      w_.SetStatus(GlobalStatus::kFailed);
      w_.SetRollbackReason(std::string(kNotifyExhausted));
      return;
    }
    if (state_->cycle_start_ms == 0) {  // submitted just now (two-phase, resend)
      state_->cycle_start_ms = now_ms_;
      dirty_ = true;
    }
    const int64_t due = NotifyDueMs(*state_, now_ms_);
    if (now_ms_ >= due) {
      round_.in_flight[0] = 1;
      round_.in_flight_count += 1;
      calls_.push_back(0);
      return;
    }
    if (snap_.global.next_cron_time_ms != due) {
      const size_t k = static_cast<size_t>(state_->cycle_attempts);
      w_.SetWakeup(Wakeup{state_->schedule_ms[k], due});
    }
  }

  TransSnapshot& snap_;
  Round& round_;
  const Settings& settings_;
  int64_t now_ms_;
  Writer w_;
  NotifyState* state_ = nullptr;  // in round_.notify
  bool dirty_ = false;
  std::vector<size_t> calls_;
};

}  // namespace

Decision NotifyStep(TransSnapshot& snap, Round& round, const Event& event, const Settings& settings,
                    int64_t now_ms) {
  return Notify(snap, round, settings, now_ms).Run(event);
}

}  // namespace dtx::core
