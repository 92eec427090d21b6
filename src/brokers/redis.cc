// Redis Streams adapter: see redis.h.
#include "brokers/redis.h"

#include <hiredis/hiredis.h>

#include <boost/json.hpp>
#include <string>
#include <vector>

namespace dtx::brokers {
namespace {

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

timeval ToTimeval(std::chrono::milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000),
                 static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

// Errors a retry may cure (the server is loading, failing over, out of memory, ...).
bool IsTransientError(std::string_view e) {
  for (std::string_view p : {"LOADING", "BUSY", "OOM", "READONLY", "MASTERDOWN", "TRYAGAIN",
                             "CLUSTERDOWN", "NOREPLICAS"}) {
    if (e.starts_with(p)) return true;
  }
  return false;
}

std::string EncodeHeaders(const std::vector<std::pair<std::string, std::string>>& headers) {
  boost::json::object o;
  for (const auto& [name, value] : headers) o[name] = value;
  return boost::json::serialize(o);
}

void DecodeHeaders(std::string_view json, std::vector<std::pair<std::string, std::string>>* out) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(json, ec);
  if (ec || !v.is_object()) return;
  for (const auto& kv : v.as_object()) {
    if (kv.value().is_string()) {
      out->emplace_back(std::string(kv.key()), std::string(kv.value().as_string()));
    }
  }
}

// One lazily (re)connected hiredis context.
class Connection {
 public:
  explicit Connection(HostPort hp) : hp_(std::move(hp)) {}
  ~Connection() { Drop(); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects when there is no healthy context; sets the per-operation socket timeout.
  Status Ensure(std::chrono::milliseconds timeout) {
    if (ctx_ != nullptr && ctx_->err != 0) Drop();
    if (ctx_ == nullptr) {
      ctx_ = redisConnectWithTimeout(hp_.host.c_str(), hp_.port, ToTimeval(timeout));
      if (ctx_ == nullptr || ctx_->err != 0) {
        std::string why = ctx_ != nullptr ? ctx_->errstr : "out of memory";
        Drop();
        return Status::Unavailable("redis " + Where() + ": connect: " + why);
      }
      reconnected_ = true;
      // A restarted Redis answers -LOADING until its data set is loaded; if loading ended in the
      // middle of a pipeline, a key's later XADDs would succeed after its earlier ones failed
      // (per-key order broken). So publish only once PING answers PONG.
      redisSetTimeout(ctx_, ToTimeval(timeout));
      Result<Reply> pong = Command({"PING"});
      if (!pong.ok()) return pong.status();
      if (pong.value()->type != REDIS_REPLY_STATUS ||
          std::string_view(pong.value()->str, pong.value()->len) != "PONG") {
        std::string why = pong.value()->str != nullptr ? pong.value()->str : "no PONG";
        Drop();
        return Status::Unavailable("redis " + Where() + ": not ready: " + why);
      }
    }
    redisSetTimeout(ctx_, ToTimeval(timeout));
    return Status::Ok();
  }
  void Drop() {
    if (ctx_ != nullptr) redisFree(ctx_);
    ctx_ = nullptr;
  }
  // True once after each new connection (the consumer re-reads its pending entries then).
  bool TakeReconnected() { return std::exchange(reconnected_, false); }

  void Append(const std::vector<std::string_view>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (std::string_view a : args) {
      argv.push_back(a.data() != nullptr ? a.data() : "");
      lens.push_back(a.size());
    }
    redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data());
  }
  // The next reply; kUnavailable (connection dropped) on an I/O error or timeout.
  Result<Reply> Next() {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) {
      std::string why = ctx_->errstr;
      Drop();
      return Status::Unavailable("redis " + Where() + ": " + why);
    }
    return Reply(static_cast<redisReply*>(raw));
  }
  Result<Reply> Command(const std::vector<std::string_view>& args) {
    Append(args);
    return Next();
  }
  std::string Where() const { return hp_.host + ":" + std::to_string(hp_.port); }

 private:
  HostPort hp_;
  redisContext* ctx_ = nullptr;
  bool reconnected_ = false;
};

Status ReplyError(const redisReply* r, std::string_view what) {
  std::string msg = std::string(what) + ": " + std::string(r->str, r->len);
  return IsTransientError(msg.substr(what.size() + 2)) ? Status::Unavailable(msg)
                                                       : Status::InvalidArgument(msg);
}

class RedisPublisher final : public Publisher {
 public:
  explicit RedisPublisher(HostPort hp) : conn_(std::move(hp)) {}

  std::vector<Status> Publish(const std::vector<Message>& batch,
                              std::chrono::milliseconds timeout) override {
    std::vector<Status> out(batch.size());
    if (Status s = conn_.Ensure(timeout); !s.ok()) {
      for (Status& o : out) o = s;
      return out;
    }
    std::vector<std::string> headers(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      const Message& m = batch[i];
      headers[i] = EncodeHeaders(m.headers);
      conn_.Append({"XADD", m.topic, "*", "message_id", m.message_id, "key", m.key, "headers",
                    headers[i], "payload", m.payload});
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      Result<Reply> r = conn_.Next();
      if (!r.ok()) {  // the connection is gone: the fate of this and every later XADD is unknown
        for (size_t j = i; j < batch.size(); ++j) out[j] = r.status();
        break;
      }
      if (r.value()->type == REDIS_REPLY_ERROR) out[i] = ReplyError(r.value().get(), "XADD");
    }
    return out;
  }
  std::string Describe() const override { return "redis://" + conn_.Where(); }

 private:
  Connection conn_;
};

class RedisConsumer final : public Consumer {
 public:
  RedisConsumer(HostPort hp, ConsumerOptions o) : conn_(std::move(hp)), options_(std::move(o)) {}

  Result<std::vector<Delivery>> Fetch(size_t max, std::chrono::milliseconds wait) override {
    if (max == 0 || max > 1000) return Status::InvalidArgument("Fetch: max must be 1..1000");
    if (Status s = conn_.Ensure(wait + std::chrono::seconds(5)); !s.ok()) return s;
    if (conn_.TakeReconnected()) {
      if (Status s = CreateGroups(); !s.ok()) return s;
      own_pending_done_ = false;
    }
    std::vector<Delivery> out;
    if (!own_pending_done_) {  // entries delivered to this consumer and never acknowledged
      if (Status s = Read(max, "0", std::chrono::milliseconds(-1), &out); !s.ok()) return s;
      if (!out.empty()) return out;
      own_pending_done_ = true;
    }
    if (std::chrono::steady_clock::now() >= next_autoclaim_) {
      next_autoclaim_ = std::chrono::steady_clock::now() + options_.redeliver_after / 2;
      for (const std::string& topic : options_.topics) {
        if (Status s = AutoClaim(topic, max, &out); !s.ok()) return s;
        if (!out.empty()) return out;
      }
    }
    if (Status s = Read(max, ">", wait, &out); !s.ok()) return s;
    return out;
  }

  Status Ack(const Delivery& d) override {
    if (Status s = conn_.Ensure(std::chrono::seconds(5)); !s.ok()) return s;
    Result<Reply> r = conn_.Command({"XACK", d.message.topic, options_.group, d.handle});
    if (!r.ok()) return r.status();
    if (r.value()->type == REDIS_REPLY_ERROR) return ReplyError(r.value().get(), "XACK");
    return Status::Ok();
  }

 private:
  Status CreateGroups() {
    for (const std::string& topic : options_.topics) {
      Result<Reply> r = conn_.Command({"XGROUP", "CREATE", topic, options_.group, "0", "MKSTREAM"});
      if (!r.ok()) return r.status();
      const redisReply* rep = r.value().get();
      if (rep->type == REDIS_REPLY_ERROR && !std::string_view(rep->str).starts_with("BUSYGROUP")) {
        return ReplyError(rep, "XGROUP CREATE " + topic);
      }
    }
    return Status::Ok();
  }

  // XREADGROUP from `id` ("0": own pending entries; ">": new ones), blocking up to `wait` (< 0:
  // no BLOCK).
  Status Read(size_t max, std::string_view id, std::chrono::milliseconds wait,
              std::vector<Delivery>* out) {
    const std::string count = std::to_string(max);
    const std::string block = std::to_string(std::max<int64_t>(wait.count(), 1));
    std::vector<std::string_view> args = {"XREADGROUP",      "GROUP", options_.group,
                                          options_.consumer, "COUNT", count};
    if (wait.count() >= 0) {
      args.push_back("BLOCK");
      args.push_back(block);
    }
    args.push_back("STREAMS");
    for (const std::string& t : options_.topics) args.push_back(t);
    for (size_t i = 0; i < options_.topics.size(); ++i) args.push_back(id);
    Result<Reply> r = conn_.Command(args);
    if (!r.ok()) return r.status();
    const redisReply* rep = r.value().get();
    if (rep->type == REDIS_REPLY_ERROR) return ReplyError(rep, "XREADGROUP");
    if (rep->type != REDIS_REPLY_ARRAY) return Status::Ok();  // nil: nothing in time
    for (size_t s = 0; s < rep->elements; ++s) {
      const redisReply* stream = rep->element[s];
      if (stream->type != REDIS_REPLY_ARRAY || stream->elements != 2) continue;
      std::string topic(stream->element[0]->str, stream->element[0]->len);
      AppendEntries(topic, stream->element[1], out);
    }
    return Status::Ok();
  }

  Status AutoClaim(const std::string& topic, size_t max, std::vector<Delivery>* out) {
    const std::string idle = std::to_string(options_.redeliver_after.count());
    const std::string count = std::to_string(max);
    Result<Reply> r = conn_.Command(
        {"XAUTOCLAIM", topic, options_.group, options_.consumer, idle, "0-0", "COUNT", count});
    if (!r.ok()) return r.status();
    const redisReply* rep = r.value().get();
    if (rep->type == REDIS_REPLY_ERROR) return ReplyError(rep, "XAUTOCLAIM");
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2) {
      AppendEntries(topic, rep->element[1], out);
    }
    return Status::Ok();
  }

  // Entries [[id, [field, value, ...]], ...]; an entry deleted from the stream (nil fields) is
  // acknowledged and skipped.
  void AppendEntries(const std::string& topic, const redisReply* entries,
                     std::vector<Delivery>* out) {
    if (entries->type != REDIS_REPLY_ARRAY) return;
    for (size_t e = 0; e < entries->elements; ++e) {
      const redisReply* entry = entries->element[e];
      if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) continue;
      Delivery d;
      d.message.topic = topic;
      d.handle.assign(entry->element[0]->str, entry->element[0]->len);
      const redisReply* fields = entry->element[1];
      if (fields->type != REDIS_REPLY_ARRAY) {
        (void)Ack(d);
        continue;
      }
      for (size_t f = 0; f + 1 < fields->elements; f += 2) {
        std::string_view name(fields->element[f]->str, fields->element[f]->len);
        std::string value(fields->element[f + 1]->str, fields->element[f + 1]->len);
        if (name == "message_id") d.message.message_id = std::move(value);
        if (name == "key") d.message.key = std::move(value);
        if (name == "payload") d.message.payload = std::move(value);
        if (name == "headers") DecodeHeaders(value, &d.message.headers);
      }
      out->push_back(std::move(d));
    }
  }

  Connection conn_;
  ConsumerOptions options_;
  bool own_pending_done_ = false;
  std::chrono::steady_clock::time_point next_autoclaim_{};
};

}  // namespace

Result<std::unique_ptr<Publisher>> OpenRedisPublisher(std::string_view url) {
  Result<HostPort> hp = ParseHostPort(url, "redis", 6379);
  if (!hp.ok()) return hp.status();
  return std::unique_ptr<Publisher>(new RedisPublisher(std::move(hp.value())));
}

Result<std::unique_ptr<Consumer>> OpenRedisConsumer(std::string_view url, ConsumerOptions options) {
  Result<HostPort> hp = ParseHostPort(url, "redis", 6379);
  if (!hp.ok()) return hp.status();
  return std::unique_ptr<Consumer>(new RedisConsumer(std::move(hp.value()), std::move(options)));
}

}  // namespace dtx::brokers
