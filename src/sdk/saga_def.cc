// Saga definitions in the SDK (include/dtx/saga_def.h): PUT/GET /api/dtx/sagas and the submit by
// name, through the Client's connection (its headers, TLS and deadline).
#include "dtx/saga_def.h"

#include <boost/json.hpp>
#include <utility>

#include "http/client.h"
#include "sdk/business_keys_internal.h"
#include "sdk/client_internal.h"

namespace dtx {
namespace {

namespace json = boost::json;
using Answer = sdk_internal::ClientAnswer;

constexpr size_t kMaxBodyInMessage = 512;

std::string Shortened(const std::string& body) {
  if (body.size() <= kMaxBodyInMessage) return body;
  return body.substr(0, kMaxBodyInMessage) + "...";
}

// The answer's JSON object, or the Status of a non-200 answer / a body that is not an object.
Result<json::object> ObjectAnswer(const Result<Answer>& a, const std::string& what) {
  if (!a.ok()) return Status(a.status().code(), what + ": " + a.status().message());
  if (Status s = sdk_internal::StatusOfAnswer(a->status, a->body, what); !s.ok()) return s;
  json::error_code ec;
  json::value v = json::parse(a->body, ec);
  if (ec || !v.is_object()) {
    return Status::Internal(what + ": unexpected answer: " + Shortened(a->body));
  }
  return std::move(v.as_object());
}

std::string StringOf(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

int64_t IntOf(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_int64() ? v->as_int64() : 0;
}

std::string SagasTarget(Client& client, const std::string& name) {
  std::string target = ClientInternals::Of(client).RootTarget() + "/api/dtx/sagas";
  if (!name.empty()) target += "/" + http::UrlEncode(name);
  return target;
}

}  // namespace

Status CheckSagaName(const std::string& name) {
  if (name.empty() || name.size() > kMaxSagaNameBytes) {
    return Status::InvalidArgument("saga definition name must have 1 to " +
                                   std::to_string(kMaxSagaNameBytes) + " bytes");
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) {
      return Status::InvalidArgument("saga definition name '" + name +
                                     "' may only use A-Z a-z 0-9 _ . -");
    }
  }
  return Status::Ok();
}

Result<SagaDefinitionPut> SagaDefinitions::Put(const std::string& name,
                                               const std::string& definition_json) {
  if (Status s = CheckSagaName(name); !s.ok()) return s;
  if (definition_json.size() > kMaxSagaDefinitionBytes) {
    return Status::InvalidArgument(
        "saga definition '" + name + "' has " + std::to_string(definition_json.size()) +
        " bytes, over the limit of " + std::to_string(kMaxSagaDefinitionBytes));
  }
  const std::string what = "put saga definition " + name;
  auto a =
      ClientInternals::Of(client_).Exchange("PUT", SagasTarget(client_, name), definition_json);
  Result<json::object> o = ObjectAnswer(a, what);
  if (!o.ok()) return o.status();
  SagaDefinitionPut out;
  out.name = StringOf(*o, "name");
  out.version = IntOf(*o, "version");
  const json::value* changed = o->if_contains("changed");
  out.changed = changed != nullptr && changed->is_bool() && changed->as_bool();
  if (out.version <= 0) return Status::Internal(what + ": answer without a version");
  return out;
}

Result<std::vector<SagaDefinitionVersion>> SagaDefinitions::Get(const std::string& name) {
  if (Status s = CheckSagaName(name); !s.ok()) return s;
  const std::string what = "get saga definition " + name;
  auto a = ClientInternals::Of(client_).Exchange("GET", SagasTarget(client_, name), {});
  Result<json::object> o = ObjectAnswer(a, what);
  if (!o.ok()) return o.status();
  const json::value* versions = o->if_contains("versions");
  if (versions == nullptr || !versions->is_array()) {
    return Status::Internal(what + ": answer without versions");
  }
  std::vector<SagaDefinitionVersion> out;
  for (const json::value& v : versions->as_array()) {
    if (!v.is_object()) return Status::Internal(what + ": a version is not an object");
    const json::object& vo = v.as_object();
    SagaDefinitionVersion version;
    version.version = IntOf(vo, "version");
    version.create_time_ms = IntOf(vo, "create_time");
    if (const json::value* d = vo.if_contains("definition"); d != nullptr) {
      version.definition = json::serialize(*d);
    }
    out.push_back(std::move(version));
  }
  return out;
}

Result<SagaDefinitionPage> SagaDefinitions::List(int limit, const std::string& position) {
  if (limit < 1 || limit > 1000) {
    return Status::InvalidArgument("saga definitions: limit must be in [1, 1000]");
  }
  std::string target = SagasTarget(client_, {}) + "?limit=" + std::to_string(limit);
  if (!position.empty()) target += "&position=" + http::UrlEncode(position);
  auto a = ClientInternals::Of(client_).Exchange("GET", target, {});
  Result<json::object> o = ObjectAnswer(a, "list saga definitions");
  if (!o.ok()) return o.status();
  const json::value* sagas = o->if_contains("sagas");
  if (sagas == nullptr || !sagas->is_array()) {
    return Status::Internal("list saga definitions: answer without sagas");
  }
  SagaDefinitionPage page;
  for (const json::value& v : sagas->as_array()) {
    if (!v.is_object()) return Status::Internal("list saga definitions: an entry is not an object");
    const json::object& so = v.as_object();
    page.sagas.push_back({StringOf(so, "name"), IntOf(so, "version"), StringOf(so, "update_time")});
  }
  page.next_position = StringOf(*o, "next_position");
  return page;
}

SagaByName::SagaByName(Client& client, std::string name, std::string gid)
    : client_(client), name_(std::move(name)), gid_(std::move(gid)) {}

SagaByName& SagaByName::SetPayload(std::string step, std::string payload) {
  payloads_[std::move(step)] = std::move(payload);
  return *this;
}
SagaByName& SagaByName::SetInput(std::string json_object) {
  input_ = std::move(json_object);
  return *this;
}
SagaByName& SagaByName::SetWaitResult(bool wait_result) {
  wait_result_ = wait_result;
  return *this;
}
SagaByName& SagaByName::SetBusinessKeys(std::vector<std::string> keys, OnBusy on_busy) {
  business_keys_ = std::move(keys);
  on_busy_ = on_busy;
  return *this;
}

std::string SagaByName::BuildBody() const {
  json::object body;
  if (!gid_.empty()) body["gid"] = gid_;
  if (!payloads_.empty()) {
    json::object payloads;
    for (const auto& [step, payload] : payloads_) payloads[step] = payload;
    body["payloads"] = std::move(payloads);
  }
  if (input_) {
    json::error_code ec;
    json::value input = json::parse(*input_, ec);
    body["input"] = ec ? json::value(nullptr) : std::move(input);  // Validate refuses it first
  }
  if (wait_result_) body["wait_result"] = true;
  sdk_internal::AddBusinessKeys(body, business_keys_, on_busy_);
  return json::serialize(body);
}

Status SagaByName::Validate() const {
  if (Status s = CheckSagaName(name_); !s.ok()) return s;
  if (input_) {
    if (!payloads_.empty())
      return Status::InvalidArgument("saga by name: payloads or input, not both");
    json::error_code ec;
    json::value input = json::parse(*input_, ec);
    if (ec || !input.is_object()) {
      return Status::InvalidArgument("saga by name: input must be a JSON object");
    }
  }
  // The definition's orders (if any) are added to custom_data by the coordinator; it answers 400
  // if the keys then no longer fit.
  if (Status s = CheckBusinessKeys(business_keys_, on_busy_); !s.ok()) {
    return Status::InvalidArgument("saga by name: " + s.message());
  }
  return Status::Ok();
}

Status SagaByName::Submit() {
  if (Status s = Validate(); !s.ok()) return s;
  const std::string what = "submit saga " + name_;
  const std::chrono::milliseconds deadline =
      sdk_internal::SubmitDeadline(client_, wait_result_ && !business_keys_.empty());
  auto a = ClientInternals::Of(client_).Exchange("POST", SagasTarget(client_, name_) + "/submit",
                                                 BuildBody(), deadline);
  Result<json::object> o = ObjectAnswer(a, what);
  if (!o.ok()) return o.status();
  if (StringOf(*o, "dtm_result") != "SUCCESS") {
    return Status::Internal(what + ": unexpected answer: " + json::serialize(*o));
  }
  std::string gid = StringOf(*o, "gid");
  if (gid.empty()) return Status::Internal(what + ": answer without a gid");
  gid_ = std::move(gid);
  return Status::Ok();
}

}  // namespace dtx
