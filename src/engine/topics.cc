// Topics (PROTOCOL.md §2.3) and the KV reads: the KV row (cat "topics", k = name) whose v is the
// JSON array [{"url","remark"}], changed by read-modify-compare-and-set on the row's version.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>

#include "engine/engine_internal.h"
#include "engine/refusal.h"
#include "engine/store_await.h"
#include "util/utf8.h"

namespace dtx::engine {

using asio::awaitable;

namespace {

constexpr const char* kTopicsCat = "topics";
constexpr int kTopicCasAttempts = 8;

std::string EncodeSubscribers(const std::vector<Engine::Subscriber>& subs) {
  boost::json::array a;
  for (const auto& s : subs) a.push_back(boost::json::object{{"url", s.url}, {"remark", s.remark}});
  return boost::json::serialize(a);
}

// Reads a stored subscriber list. A value that does not parse (written before the API refused
// invalid UTF-8, or changed by hand) must not take the topic down (issue 15): its ill-formed bytes
// read as U+FFFD, entries that are not subscribers are skipped, and a value that is not a list at
// all reads as empty. Each case is logged as an error with the stored value, for the operator; the
// next subscribe or unsubscribe writes a clean list.
std::vector<Engine::Subscriber> DecodeSubscribers(const std::string& topic, const std::string& v) {
  boost::system::error_code ec;
  boost::json::value parsed = boost::json::parse(v, ec);
  if (ec) {
    boost::json::parse_options lenient;
    lenient.allow_invalid_utf8 = true;
    ec.clear();
    parsed = boost::json::parse(v, ec, {}, lenient);
    spdlog::error(
        "topic {}: the stored subscriber list is not valid JSON{}; read {}. Stored value ({} "
        "bytes): {}",
        RepairUtf8(topic), ec ? "" : " (invalid UTF-8)",
        ec ? "as empty" : "with U+FFFD for the bad bytes", v.size(), RepairUtf8(v.substr(0, 2048)));
    if (ec) return {};
  }
  if (!parsed.is_array()) {
    spdlog::error("topic {}: the stored value is not a list; read as empty. Stored value: {}",
                  RepairUtf8(topic), RepairUtf8(v.substr(0, 2048)));
    return {};
  }
  std::vector<Engine::Subscriber> subs;
  for (const auto& e : parsed.get_array()) {
    const auto* o = e.if_object();
    const auto* u = o != nullptr ? o->if_contains("url") : nullptr;
    if (u == nullptr || !u->is_string()) {
      spdlog::error("topic {}: skipped a stored entry that is not a subscriber: {}",
                    RepairUtf8(topic), RepairUtf8(boost::json::serialize(e).substr(0, 512)));
      continue;
    }
    Engine::Subscriber s;
    s.url = RepairUtf8(std::string_view(u->get_string()));
    if (const auto* r = o->if_contains("remark"); r != nullptr && r->is_string()) {
      s.remark = RepairUtf8(std::string_view(r->get_string()));
    }
    subs.push_back(std::move(s));
  }
  return subs;
}

// kInvalidArgument for an empty topic name or url.
Status CheckTopicAndUrl(const std::string& topic, const std::string& url) {
  if (topic.empty()) {
    return refusal::Topic(Code::kInvalidArgument, refusal::kTopicEmptyName, topic);
  }
  if (url.empty()) return refusal::Topic(Code::kInvalidArgument, refusal::kTopicEmptyUrl, topic);
  // The API refuses it first (api/input_checks.h); stored, it would make the list unreadable.
  if (!IsValidUtf8(topic) || !IsValidUtf8(url)) {
    return Status::InvalidArgument("topic and url must be valid UTF-8");
  }
  return Status::Ok();
}

}  // namespace

awaitable<Result<std::vector<Engine::Subscriber>>> Engine::TopicSubscribers(std::string topic) {
  auto row = co_await AwaitStore<Result<std::optional<store::KvRow>>>(
      [&](auto cb) { store_.KvGet(kTopicsCat, topic, std::move(cb)); });
  if (!row.ok()) co_return row.status();
  if (!row->has_value()) co_return std::vector<Subscriber>();
  co_return DecodeSubscribers(topic, (*row)->v);
}

awaitable<Status> Engine::ChangeTopic(
    const std::string& topic, bool create,
    const std::function<Status(std::vector<Subscriber>&)>& change) {
  for (int attempt = 0; attempt < kTopicCasAttempts; ++attempt) {
    auto row = co_await AwaitStore<Result<std::optional<store::KvRow>>>(
        [&](auto cb) { store_.KvGet(kTopicsCat, topic, std::move(cb)); });
    if (!row.ok()) co_return row.status();
    std::vector<Subscriber> subs;
    int64_t version = 0;
    if (row->has_value()) {
      subs = DecodeSubscribers(topic, (*row)->v);
      version = (*row)->version;
    } else if (!create) {
      co_return refusal::Topic(Code::kNotFound, refusal::kTopicNotFound, topic, "unsubscribe");
    }
    if (Status s = change(subs); !s.ok()) co_return s;
    std::string v = EncodeSubscribers(subs);
    const int64_t now = clock_.NowMs();
    Status put = co_await AwaitStore<Status>([&](auto cb) {
      store_.KvPut(kTopicsCat, topic, std::move(v), version, now, std::move(cb));
    });
    if (put.code() != Code::kConflict) co_return put;
  }
  co_return Status::Unavailable("topic " + topic + " keeps changing concurrently; retry");
}

awaitable<Status> Engine::Subscribe(std::string topic, std::string url, std::string remark) {
  if (Status s = CheckTopicAndUrl(topic, url); !s.ok()) co_return s;
  if (!IsValidUtf8(remark)) co_return Status::InvalidArgument("remark must be valid UTF-8");
  co_return co_await ChangeTopic(topic, /*create=*/true, [&](std::vector<Subscriber>& subs) {
    for (const auto& sub : subs) {
      if (sub.url == url) {
        return refusal::Topic(Code::kAlreadyExists, refusal::kTopicUrlExists, topic);
      }
    }
    subs.push_back(Subscriber{url, remark});
    return Status::Ok();
  });
}

awaitable<Status> Engine::Unsubscribe(std::string topic, std::string url) {
  if (Status s = CheckTopicAndUrl(topic, url); !s.ok()) co_return s;
  co_return co_await ChangeTopic(topic, /*create=*/false, [&](std::vector<Subscriber>& subs) {
    auto it = std::find_if(subs.begin(), subs.end(),
                           [&](const Subscriber& sub) { return sub.url == url; });
    if (it == subs.end()) {
      return refusal::Topic(Code::kNotFound, refusal::kTopicUrlNotFound, topic);
    }
    subs.erase(it);
    return Status::Ok();
  });
}

awaitable<Status> Engine::DeleteTopic(std::string topic) {
  Status s = co_await AwaitStore<Status>(
      [&](auto cb) { store_.KvDelete(kTopicsCat, topic, std::move(cb)); });
  if (s.code() == Code::kNotFound) {
    co_return refusal::Topic(Code::kNotFound, refusal::kTopicNotFound, topic, "delete");
  }
  co_return s;
}

awaitable<Result<store::KvPage>> Engine::ScanKv(std::string cat, int64_t before_id, int limit) {
  co_return co_await AwaitStore<Result<store::KvPage>>(
      [&](auto cb) { store_.KvScan(cat, before_id, limit, std::move(cb)); });
}

awaitable<Result<std::vector<store::KvRow>>> Engine::QueryKv(std::string cat, std::string key) {
  co_return co_await AwaitStore<Result<std::vector<store::KvRow>>>(
      [&](auto cb) { store_.KvQuery(cat, key, std::move(cb)); });
}

awaitable<Status> Engine::PutKv(std::string cat, std::string key, std::string value,
                                int64_t expected_version) {
  const int64_t now = clock_.NowMs();
  co_return co_await AwaitStore<Status>([&](auto cb) {
    store_.KvPut(std::move(cat), std::move(key), std::move(value), expected_version, now,
                 std::move(cb));
  });
}

}  // namespace dtx::engine
