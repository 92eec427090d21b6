// The encoding half of the codec (codec.h): DTM's answers and the transaction views, serialized the
// way Go's encoding/json writes them.
#include <boost/json.hpp>
#include <charconv>
#include <limits>
#include <string>
#include <string_view>
#include <utility>

#include "api/codec.h"
#include "core/business_keys.h"
#include "core/json_keys.h"
#include "util/base64.h"
#include "util/clock.h"
#include "util/utf8.h"

namespace dtx::api {

namespace json = boost::json;

namespace {

// ------------------------------------------------------------------------------------------------
// Encoding

// Go's json.Marshal writes each byte of an invalid UTF-8 sequence as U+FFFD; strings that reach the
// encoder unvalidated (a participant's answer in last_error, cut at kMaxLastErrorBytes) need it.
void AppendString(std::string& out, std::string_view s) {
  if (IsValidUtf8(s)) {
    out += json::serialize(json::string_view(s.data(), s.size()));
    return;
  }
  std::string fixed = RepairUtf8(s);
  out += json::serialize(json::string_view(fixed.data(), fixed.size()));
}

template <class T>
void AppendNumber(std::string& out, T n) {
  std::array<char, 32> buf;
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), n);
  DTX_ASSERT(ec == std::errc());
  out.append(buf.data(), end);
}

// Serializes like json::serialize, except that doubles use the shortest plain form ("1.5", not
// Boost's "1.5E0") and strings are made valid UTF-8. Strings are escaped by Boost.JSON.
void AppendValue(std::string& out, const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      out += "null";
      break;
    case json::kind::bool_:
      out += v.get_bool() ? "true" : "false";
      break;
    case json::kind::int64:
      AppendNumber(out, v.get_int64());
      break;
    case json::kind::uint64:
      AppendNumber(out, v.get_uint64());
      break;
    case json::kind::double_: {
      double d = v.get_double();
      DTX_ASSERT(d == d && d != std::numeric_limits<double>::infinity() &&
                 d != -std::numeric_limits<double>::infinity());
      AppendNumber(out, d);
      break;
    }
    case json::kind::string:
      AppendString(out, v.get_string());
      break;
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const json::value& e : v.get_array()) {
        if (!first) {
          out += ',';
        }
        first = false;
        AppendValue(out, e);
      }
      out += ']';
      break;
    }
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& kv : v.get_object()) {
        if (!first) {
          out += ',';
        }
        first = false;
        AppendString(out, kv.key());
        out += ':';
        AppendValue(out, kv.value());
      }
      out += '}';
      break;
    }
  }
}

std::string Serialize(const json::value& v) {
  std::string out;
  AppendValue(out, v);
  return out;
}

json::value Time(int64_t ms) {
  if (ms == 0) {
    return nullptr;  // DTM: a nil *time.Time
  }
  return json::string(FormatTimeMs(ms));
}

void PutString(json::object& o, std::string_view key, std::string_view value) {
  if (!value.empty()) {
    o.emplace(key, json::string_view(value.data(), value.size()));
  }
}

void PutTime(json::object& o, std::string_view key, int64_t ms) {
  if (ms != 0) {
    o.emplace(key, FormatTimeMs(ms));
  }
}

// Saga concurrency lives in custom_data ({"concurrent":true,...}); read it the way the saga
// machine does (core/json_keys.h) but never fail: the value was validated on input.
bool SagaConcurrent(std::string_view custom_data) {
  if (custom_data.empty()) return false;
  boost::system::error_code ec;
  json::value v = json::parse(json::string_view(custom_data.data(), custom_data.size()), ec);
  if (ec || !v.is_object()) return false;
  const json::value* c = core::GoField(v.get_object(), "concurrent");
  return c != nullptr && c->is_bool() && c->get_bool();
}

json::object TransactionObject(const core::GlobalTrans& t) {
  json::object o;
  o.reserve(19);
  o.emplace("id", t.id);
  o.emplace("create_time", Time(t.create_time_ms));
  o.emplace("update_time", Time(t.update_time_ms));
  PutString(o, "gid", t.gid);
  PutString(o, "trans_type", core::ToString(t.trans_type));
  PutString(o, "status", core::ToString(t.status));
  PutString(o, "protocol", t.protocol);
  PutTime(o, "finish_time", t.finish_time_ms);
  PutTime(o, "rollback_time", t.rollback_time_ms);
  PutString(o, "options", core::EncodeOptionsJson(t.options));
  PutString(o, "custom_data", t.custom_data);
  PutString(o, "query_prepared", t.query_prepared);
  PutString(o, "rollback_reason", t.rollback_reason);
  PutString(o, "result", t.result);
  PutString(o, "owner", t.owner);
  if (t.next_cron_interval_ms != 0) {
    if (t.next_cron_interval_ms % 1000 == 0) {
      o.emplace("next_cron_interval", t.next_cron_interval_ms / 1000);
    } else {
      o.emplace("next_cron_interval", static_cast<double>(t.next_cron_interval_ms) / 1000.0);
    }
  }
  PutTime(o, "next_cron_time", t.next_cron_time_ms);
  o.emplace("concurrent", t.trans_type == core::TransType::kSaga ? SagaConcurrent(t.custom_data)
                                                                 : t.options.concurrent);
  if (t.retry_count > 0) {
    o.emplace("retry_count", t.retry_count);
  }
  return o;
}

json::object BranchObject(const core::BranchRow& b) {
  json::object o;
  o.reserve(12);
  o.emplace("id", b.id);
  o.emplace("create_time", Time(b.create_time_ms));
  o.emplace("update_time", Time(b.update_time_ms));
  PutString(o, "gid", b.gid);
  PutString(o, "url", b.url);
  PutString(o, "bin_data", util::Base64Encode(b.bin_data));
  PutString(o, "branch_id", b.branch_id);
  PutString(o, "op", b.op);
  PutString(o, "status", core::ToString(b.status));
  PutTime(o, "finish_time", b.finish_time_ms);
  if (b.attempts > 0) {
    o.emplace("attempts", b.attempts);
  }
  PutString(o, "last_error", b.last_error);
  return o;
}

std::string Envelope(std::string_view result, std::string_view message) {
  json::object o;
  o.emplace("dtm_result", json::string_view(result.data(), result.size()));
  o.emplace("message", json::string_view(message.data(), message.size()));
  return Serialize(o);
}

}  // namespace

std::string EncodeTransaction(const core::GlobalTrans& t) {
  return Serialize(TransactionObject(t));
}

std::string EncodeBranch(const core::BranchRow& b) { return Serialize(BranchObject(b)); }

std::optional<json::object> BusinessKeysJson(const core::GlobalTrans& g,
                                             const core::KeyState* state) {
  if (g.custom_data.find("\"business_keys\"") == std::string::npos) return std::nullopt;
  Result<core::KeySpec> spec = core::ParseKeySpec(g.custom_data);
  if (!spec.ok() || spec->keys.empty()) return std::nullopt;
  json::object k;
  json::array list;
  for (const std::string& key : spec->keys) list.emplace_back(key);
  k.emplace("keys", std::move(list));
  if (state != nullptr) {
    k.emplace("held", state->held);
    if (!state->held) {
      k.emplace("waiting_for", state->waiting_for);
      k.emplace("waiting_key", state->waiting_key);
    }
  } else if (core::IsFinal(g.status)) {
    k.emplace("held", false);
    k.emplace("released", true);  // the write that made it final deleted its key rows
  }
  return k;
}

std::string EncodeQueryAnswer(const core::TransSnapshot* snapshot, const core::KeyState* keys) {
  json::object o;
  json::array branches;
  if (snapshot != nullptr) {
    o.emplace("transaction", TransactionObject(snapshot->global));
    branches.reserve(snapshot->branches.size());
    for (const core::BranchRow& b : snapshot->branches) {
      branches.emplace_back(BranchObject(b));
    }
  } else {
    o.emplace("transaction", nullptr);
  }
  o.emplace("branches", std::move(branches));
  if (snapshot != nullptr && keys != nullptr) {
    if (auto k = BusinessKeysJson(snapshot->global, keys))
      o.emplace("business_keys", std::move(*k));
  }
  return Serialize(o);
}

std::string EncodeKvAnswer(const std::vector<store::KvRow>& rows,
                           const std::string* next_position) {
  json::array kv;
  kv.reserve(rows.size());
  for (const store::KvRow& r : rows) {
    json::object o;
    o.emplace("id", r.id);
    o.emplace("create_time", Time(r.create_time_ms));
    o.emplace("update_time", Time(r.update_time_ms));
    o.emplace("cat", r.cat);
    o.emplace("k", r.k);
    o.emplace("v", r.v);
    o.emplace("version", r.version);
    kv.emplace_back(std::move(o));
  }
  json::object o;
  o.emplace("kv", std::move(kv));
  if (next_position != nullptr) o.emplace("next_position", *next_position);
  return Serialize(o);
}

std::string EncodeAllAnswer(const std::vector<core::GlobalTrans>& list,
                            std::string_view next_position) {
  json::array transactions;
  transactions.reserve(list.size());
  for (const core::GlobalTrans& t : list) {
    transactions.emplace_back(TransactionObject(t));
  }
  json::object o;
  o.emplace("transactions", std::move(transactions));
  o.emplace("next_position", json::string_view(next_position.data(), next_position.size()));
  return Serialize(o);
}

std::string SuccessBody() { return R"({"dtm_result":"SUCCESS"})"; }

std::string FailureBody(std::string_view message) { return Envelope("FAILURE", message); }

std::string OngoingBody(std::string_view message) { return Envelope("ONGOING", message); }

std::string ErrorBody(std::string_view message, std::string_view code, std::string_view gid,
                      std::string_view status) {
  json::object o;
  o.emplace("message", json::string_view(message.data(), message.size()));
  o.emplace("code", json::string_view(code.data(), code.size()));
  PutString(o, "gid", gid);
  PutString(o, "status", status);
  return Serialize(o);
}

}  // namespace dtx::api
