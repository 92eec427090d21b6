#include "api/saga_defs.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <map>
#include <set>

#include "core/machine.h"
#include "http/client.h"

namespace dtx::api {

namespace json = boost::json;

namespace {

Status Bad(std::string m) { return Status::InvalidArgument(std::move(m)); }

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

Status CheckName(std::string_view what, std::string_view name, size_t max_bytes) {
  if (name.empty() || name.size() > max_bytes) {
    return Bad(fmt::format("{} must be 1 to {} bytes", what, max_bytes));
  }
  for (char c : name) {
    if (!IsNameChar(c)) {
      return Bad(fmt::format("{} '{}' may hold only letters, digits, '_', '-' and '.'", what,
                             name.substr(0, max_bytes)));
    }
  }
  return Status::Ok();
}

// "{payment}/charge" with services {"payment": "http://pay/api"} -> "http://pay/api/charge".
Result<std::string> ResolveUrl(std::string_view where, std::string_view templ,
                               const std::map<std::string, std::string, std::less<>>& services) {
  std::string out;
  for (size_t i = 0; i < templ.size(); ++i) {
    if (templ[i] == '}') return Bad(fmt::format("{}: a '}}' without its '{{'", where));
    if (templ[i] != '{') {
      out += templ[i];
      continue;
    }
    size_t end = templ.find('}', i);
    if (end == std::string_view::npos)
      return Bad(fmt::format("{}: a '{{' without its '}}'", where));
    std::string_view service = templ.substr(i + 1, end - i - 1);
    auto it = services.find(service);
    if (it == services.end()) {
      return Bad(fmt::format("{}: unknown service '{}'", where, service.substr(0, 64)));
    }
    out += it->second;
    i = end;
  }
  if (out.empty()) return out;
  if (out.size() > core::kMaxUrlBytes) {
    return Bad(fmt::format("{}: the URL is over {} bytes", where, core::kMaxUrlBytes));
  }
  if (auto parsed = http::ParseHttpUrl(out); !parsed.ok()) {
    return Bad(fmt::format("{}: '{}' is not an http:// URL ({})", where, out.substr(0, 128),
                           parsed.status().message()));
  }
  return out;
}

Status ParseServices(const json::value* v,
                     std::map<std::string, std::string, std::less<>>& services) {
  if (v == nullptr || v->is_null()) return Status::Ok();
  if (!v->is_object()) return Bad("services must be an object of name: base URL");
  if (v->get_object().size() > kMaxSagaServices) {
    return Bad(fmt::format("services: more than {}", kMaxSagaServices));
  }
  for (const auto& kv : v->get_object()) {
    std::string name(kv.key());
    if (Status s = CheckName("service name", name, kMaxSagaNameBytes); !s.ok()) return s;
    if (!kv.value().is_string()) return Bad(fmt::format("services.{} must be a string", name));
    std::string base(kv.value().get_string());
    if (auto parsed = http::ParseHttpUrl(base); !parsed.ok()) {
      return Bad(fmt::format("services.{}: '{}' is not an http:// URL", name, base.substr(0, 128)));
    }
    services.emplace(std::move(name), std::move(base));
  }
  return Status::Ok();
}

Status ParseSteps(const json::value* v,
                  const std::map<std::string, std::string, std::less<>>& services,
                  std::vector<SagaDefStep>& steps) {
  if (v == nullptr || !v->is_array()) return Bad("steps must be an array of step objects");
  const json::array& arr = v->get_array();
  if (arr.empty()) return Bad("steps is empty: a saga needs at least one step");
  if (arr.size() > core::kMaxSteps) {
    return Bad(fmt::format("steps: {} given, the limit is {}", arr.size(), core::kMaxSteps));
  }
  std::set<std::string, std::less<>> names;
  for (size_t i = 0; i < arr.size(); ++i) {
    const std::string where = fmt::format("steps[{}]", i);
    if (!arr[i].is_object()) return Bad(where + " must be an object");
    SagaDefStep step;
    std::string action_t, compensate_t;
    for (const auto& kv : arr[i].get_object()) {
      if (!kv.value().is_string()) {
        return Bad(fmt::format("{}.{} must be a string", where, std::string_view(kv.key())));
      }
      std::string value(kv.value().get_string());
      if (kv.key() == "name") {
        step.name = std::move(value);
      } else if (kv.key() == "action") {
        action_t = std::move(value);
      } else if (kv.key() == "compensate") {
        compensate_t = std::move(value);
      } else {
        return Bad(fmt::format("{}: unknown field '{}' (name, action, compensate)", where,
                               std::string_view(kv.key()).substr(0, 64)));
      }
    }
    if (Status s = CheckName(where + ".name", step.name, kMaxSagaNameBytes); !s.ok()) return s;
    if (!names.insert(step.name).second) {
      return Bad(fmt::format("{}: step name '{}' is used twice", where, step.name));
    }
    const std::string named = fmt::format("{} ({})", where, step.name);
    if (action_t.empty()) return Bad(named + ": action is required");
    auto action = ResolveUrl(named + ".action", action_t, services);
    if (!action.ok()) return action.status();
    auto compensate = ResolveUrl(named + ".compensate", compensate_t, services);
    if (!compensate.ok()) return compensate.status();
    step.action = std::move(*action);
    step.compensate = std::move(*compensate);
    steps.push_back(std::move(step));
  }
  return Status::Ok();
}

// A cycle in `preds`, as step names "a -> b -> a"; empty if there is none.
std::string FindCycle(const std::vector<std::vector<size_t>>& preds,
                      const std::vector<SagaDefStep>& steps) {
  const size_t n = preds.size();
  std::vector<int> state(n, 0);  // 0 new, 1 on the path, 2 done
  std::vector<size_t> path;
  std::string found;
  auto visit = [&](auto&& self, size_t k) -> bool {
    state[k] = 1;
    path.push_back(k);
    for (size_t p : preds[k]) {
      if (state[p] == 1) {
        auto from = std::find(path.begin(), path.end(), p);
        for (auto it = from; it != path.end(); ++it) found += steps[*it].name + " -> ";
        found += steps[p].name;
        return true;
      }
      if (state[p] == 0 && self(self, p)) return true;
    }
    path.pop_back();
    state[k] = 2;
    return false;
  };
  for (size_t k = 0; k < n; ++k) {
    if (state[k] == 0 && visit(visit, k)) return found;
  }
  return {};
}

Status ParseOrders(const json::value* v, SagaDefinition& def) {
  const size_t n = def.steps.size();
  def.predecessors.assign(n, {});
  if (v == nullptr || v->is_null()) return Status::Ok();
  if (!v->is_object()) return Bad("orders must be an object of step: [steps it waits for]");
  std::map<std::string, size_t, std::less<>> index;
  for (size_t k = 0; k < n; ++k) index.emplace(def.steps[k].name, k);
  for (const auto& kv : v->get_object()) {
    std::string_view step(kv.key());
    auto it = index.find(step);
    if (it == index.end()) return Bad(fmt::format("orders: unknown step '{}'", step.substr(0, 64)));
    if (!kv.value().is_array())
      return Bad(fmt::format("orders.{} must be an array of step names", step));
    for (const json::value& e : kv.value().get_array()) {
      if (!e.is_string()) return Bad(fmt::format("orders.{} must be an array of step names", step));
      auto p = index.find(std::string_view(e.get_string()));
      if (p == index.end()) {
        return Bad(fmt::format("orders.{}: unknown step '{}'", step,
                               std::string_view(e.get_string()).substr(0, 64)));
      }
      if (p->second == it->second)
        return Bad(fmt::format("orders.{}: a step cannot wait for itself", step));
      auto& preds = def.predecessors[it->second];
      if (std::find(preds.begin(), preds.end(), p->second) == preds.end())
        preds.push_back(p->second);
    }
  }
  if (std::string cycle = FindCycle(def.predecessors, def.steps); !cycle.empty()) {
    return Bad("orders form a cycle: " + cycle);
  }
  def.concurrent = true;
  return Status::Ok();
}

Status GetCount(const json::value& v, std::string_view field, int64_t max, int64_t& out) {
  if (!v.is_int64() || v.get_int64() < 0 || v.get_int64() > max) {
    return Bad(fmt::format("options.{} must be an integer in [0, {}]", field, max));
  }
  out = v.get_int64();
  return Status::Ok();
}

Status ParseOptions(const json::value* v, int64_t max_retry_limit, SagaDefinition& def) {
  if (v == nullptr || v->is_null()) return Status::Ok();
  if (!v->is_object()) return Bad("options must be an object");
  core::TransOptions& o = def.options;
  for (const auto& kv : v->get_object()) {
    std::string_view k(kv.key());
    Status s = Status::Ok();
    if (k == "timeout_to_fail") {
      s = GetCount(kv.value(), k, kMaxDurationS, o.timeout_to_fail_s);
      def.has_timeout_to_fail = true;
    } else if (k == "retry_interval") {
      s = GetCount(kv.value(), k, kMaxDurationS, o.retry_interval_s);
      def.has_retry_interval = true;
    } else if (k == "request_timeout") {
      s = GetCount(kv.value(), k, kMaxDurationS, o.request_timeout_s);
      def.has_request_timeout = true;
    } else if (k == "retry_limit") {
      s = GetCount(kv.value(), k, max_retry_limit, o.retry_limit);
      def.has_retry_limit = true;
    } else {
      return Bad(
          fmt::format("options: unknown field '{}' (timeout_to_fail, retry_interval, retry_limit, "
                      "request_timeout)",
                      k.substr(0, 64)));
    }
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

// custom_data of a saga started from version `version` of `name`: its layout and its origin.
std::string CustomData(const SagaDefinition& def, std::string_view name, int64_t version) {
  json::object o;
  if (def.concurrent) {
    o["concurrent"] = true;
    json::object orders;
    for (size_t k = 0; k < def.predecessors.size(); ++k) {
      if (def.predecessors[k].empty()) continue;
      json::array preds;
      for (size_t p : def.predecessors[k]) preds.push_back(static_cast<int64_t>(p));
      orders[std::to_string(k)] = std::move(preds);
    }
    if (!orders.empty()) o["orders"] = std::move(orders);
  }
  o["saga"] = json::object{{"name", name}, {"version", version}};
  return json::serialize(o);
}

}  // namespace

Status ValidateSagaName(std::string_view name) {
  return CheckName("saga name", name, kMaxSagaNameBytes);
}

Result<SagaDefinition> ParseSagaDefinition(std::string_view text, int64_t max_retry_limit) {
  if (text.size() > kMaxSagaDefinitionBytes) {
    return Bad(fmt::format("the definition is over {} bytes", kMaxSagaDefinitionBytes));
  }
  boost::system::error_code ec;
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec) return Bad("the definition is not valid JSON: " + ec.message());
  if (!v.is_object()) return Bad("the definition must be a JSON object");
  const json::object& obj = v.get_object();
  for (const auto& kv : obj) {
    std::string_view k(kv.key());
    if (k != "services" && k != "steps" && k != "orders" && k != "options" && k != "concurrent") {
      return Bad(fmt::format("unknown field '{}' (services, steps, orders, concurrent, options)",
                             k.substr(0, 64)));
    }
  }
  SagaDefinition def;
  std::map<std::string, std::string, std::less<>> services;
  if (Status s = ParseServices(obj.if_contains("services"), services); !s.ok()) return s;
  if (Status s = ParseSteps(obj.if_contains("steps"), services, def.steps); !s.ok()) return s;
  if (Status s = ParseOrders(obj.if_contains("orders"), def); !s.ok()) return s;
  if (const json::value* c = obj.if_contains("concurrent"); c != nullptr && !c->is_null()) {
    if (!c->is_bool()) return Bad("concurrent must be a boolean");
    if (!c->get_bool() && obj.if_contains("orders") != nullptr) {
      return Bad("concurrent is false but orders are given (orders make the saga a DAG)");
    }
    def.concurrent = def.concurrent || c->get_bool();
  }
  if (Status s = ParseOptions(obj.if_contains("options"), max_retry_limit, def); !s.ok()) return s;
  // The saga's custom_data must fit its limit with the largest name and version.
  const std::string worst = CustomData(def, std::string(kMaxSagaNameBytes, 'n'), INT64_MAX);
  if (worst.size() > core::kMaxCustomDataBytes) {
    return Bad(
        fmt::format("orders are too large: the saga's custom_data would be {} bytes, over {}",
                    worst.size(), core::kMaxCustomDataBytes));
  }
  return def;
}

Result<TransRequest> BuildSubmitByName(const SagaDefinition& def, std::string_view name,
                                       int64_t version, std::string_view body,
                                       std::string generated_gid) {
  json::value v;
  if (!body.empty()) {
    boost::system::error_code ec;
    v = json::parse(json::string_view(body.data(), body.size()), ec);
    if (ec) return Bad("malformed JSON: " + ec.message());
    if (!v.is_object()) return Bad("request body must be a JSON object");
  } else {
    v = json::object();
  }
  TransRequest r;
  r.gid = std::move(generated_gid);
  r.trans_type = core::TransType::kSaga;
  std::optional<std::vector<std::string>> payloads;
  bool has_input = false;
  for (const auto& kv : v.get_object()) {
    std::string_view k(kv.key());
    const json::value& val = kv.value();
    if (val.is_null()) continue;
    if (k == "gid") {
      if (!val.is_string()) return Bad("gid must be a string");
      r.gid = std::string(val.get_string());
    } else if (k == "wait_result") {
      if (!val.is_bool()) return Bad("wait_result must be a boolean");
      r.options.wait_result = val.get_bool();
      r.has_wait_result = true;
    } else if (k == "payloads") {
      if (!val.is_object()) return Bad("payloads must be an object of step name: string");
      payloads.emplace(def.steps.size());
      for (const auto& p : val.get_object()) {
        auto it = std::find_if(def.steps.begin(), def.steps.end(),
                               [&](const SagaDefStep& s) { return s.name == p.key(); });
        if (it == def.steps.end()) {
          return Bad(
              fmt::format("payloads: unknown step '{}'", std::string_view(p.key()).substr(0, 64)));
        }
        if (!p.value().is_string()) {
          return Bad(fmt::format("payloads.{} must be a string", it->name));
        }
        (*payloads)[static_cast<size_t>(it - def.steps.begin())] = p.value().get_string();
      }
    } else if (k == "input") {
      if (!val.is_object()) return Bad("input must be a JSON object (sent to every step)");
      payloads.emplace(def.steps.size(), json::serialize(val));
      has_input = true;
    } else if (k == "business_keys") {
      if (!val.is_array()) return Bad("business_keys must be an array of strings");
      for (const json::value& key : val.get_array()) {
        if (!key.is_string()) return Bad("business_keys must be an array of strings");
        r.business_keys.emplace_back(key.get_string());
      }
      r.has_business_keys = true;
    } else if (k == "on_busy") {
      if (!val.is_string()) return Bad("on_busy must be a string (wait or reject)");
      r.on_busy = std::string(val.get_string());
    } else {
      return Bad(fmt::format(
          "unknown field '{}' (gid, payloads, input, wait_result, business_keys, on_busy)",
          k.substr(0, 64)));
    }
  }
  if (has_input && v.get_object().if_contains("payloads") != nullptr &&
      !v.get_object().at("payloads").is_null()) {
    return Bad("give payloads or input, not both");
  }
  if (Status s = core::ValidateGid(r.gid); !s.ok()) return s;
  for (const SagaDefStep& step : def.steps) {
    r.steps.push_back(StepSpec{step.action, step.compensate, std::nullopt});
  }
  if (!payloads) payloads.emplace(def.steps.size());
  for (size_t i = 0; i < payloads->size(); ++i) {
    if ((*payloads)[i].size() > core::kMaxBinDataBytes) {
      return Bad(fmt::format("the payload of step {} is over {} bytes", def.steps[i].name,
                             core::kMaxBinDataBytes));
    }
  }
  r.payloads = std::move(payloads);
  r.custom_data = CustomData(def, name, version);
  if (Status s = ApplyBusinessKeys(r); !s.ok()) return s;  // into custom_data
  const bool wait = r.options.wait_result;
  r.options = def.options;
  r.options.wait_result = wait;
  r.has_timeout_to_fail = def.has_timeout_to_fail;
  r.has_retry_interval = def.has_retry_interval;
  r.has_retry_limit = def.has_retry_limit;
  r.has_request_timeout = def.has_request_timeout;
  return r;
}

}  // namespace dtx::api
