// NATS JetStream adapter: see nats.h.
#include "brokers/nats.h"

#include <nats/nats.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace dtx::brokers {
namespace {

constexpr const char* kMsgIdHeader = "Nats-Msg-Id";
constexpr const char* kKeyHeader = "Dtx-Key";
constexpr int64_t kNsPerMs = 1'000'000;

std::string Text(natsStatus s) { return natsStatus_GetText(s); }

// Transport-level failures (the message's fate is unknown, or nothing was sent).
Status NatsError(natsStatus s, std::string_view what) {
  return Status::Unavailable("nats " + std::string(what) + ": " + Text(s));
}

std::string StreamName(std::string_view topic) {
  std::string name(topic);
  for (char& c : name) {
    if (c == '.' || c == '*' || c == '>' || c == '/' || c == '\\') c = '_';
  }
  return name;
}

// A lazily (re)created connection with its JetStream context, and the topics whose stream is
// known to exist. A connection that is not connected any more is replaced by the next call.
class Conn {
 public:
  explicit Conn(std::string url) : url_(std::move(url)) {}
  ~Conn() { Drop(); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  Status Ensure(jsOptions* jo) {
    if (nc_ != nullptr && natsConnection_Status(nc_) != NATS_CONN_STATUS_CONNECTED) Drop();
    if (nc_ != nullptr) return Status::Ok();
    natsOptions* opts = nullptr;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK) s = natsOptions_SetURL(opts, url_.c_str());
    if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 2000);
    // No reconnect inside the client: one TCP connection is FIFO, so when a publish is lost with
    // a dead connection every later one of the batch is lost too (never stored after it, which
    // would break per-key order). The next call connects anew.
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts, false);
    if (s == NATS_OK) s = natsConnection_Connect(&nc_, opts);
    natsOptions_Destroy(opts);
    if (s == NATS_OK) s = natsConnection_JetStream(&js_, nc_, jo);
    if (s != NATS_OK) {
      Drop();
      return NatsError(s, "connect to " + url_);
    }
    return Status::Ok();
  }
  void Drop() {
    if (js_ != nullptr) jsCtx_Destroy(js_);
    if (nc_ != nullptr) natsConnection_Destroy(nc_);
    js_ = nullptr;
    nc_ = nullptr;
    streams_.clear();
  }
  // Creates the topic's stream unless one exists or another stream captures the subject.
  Status EnsureStream(const std::string& topic) {
    if (streams_.count(topic) != 0) return Status::Ok();
    const std::string name = StreamName(topic);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char* subjects[] = {topic.c_str()};
    cfg.Name = name.c_str();
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_AddStream(&si, js_, &cfg, nullptr, &jerr);
    if (si != nullptr) jsStreamInfo_Destroy(si);
    if (s != NATS_OK && jerr != JSStreamNameExistErr && jerr != JSStreamSubjectOverlapErr) {
      // A transport failure also when JetStream answered with an error (no storage left,
      // JetStream disabled, no permission): the server's state, not the message, so the relay
      // keeps the rows pending and retries with backoff instead of parking them.
      return NatsError(
          s, "create stream " + name +
                 (jerr != 0 ? " (JetStream error " + std::to_string(jerr) + ")" : std::string()));
    }
    streams_.insert(topic);
    return Status::Ok();
  }
  natsConnection* nc() { return nc_; }
  jsCtx* js() { return js_; }
  const std::string& url() const { return url_; }

 private:
  std::string url_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  std::set<std::string> streams_;
};

// A subject must be a valid publish subject: no wildcards, no empty tokens, no whitespace.
Status CheckMessage(const Message& m) {
  if (m.topic.empty() || m.topic.find_first_of("*> \t\r\n") != std::string::npos ||
      m.topic.front() == '.' || m.topic.back() == '.' || m.topic.find("..") != std::string::npos) {
    return Status::InvalidArgument("nats: '" + m.topic + "' is not a valid publish subject");
  }
  for (const auto& [name, value] : m.headers) {
    if (name.find_first_of(": \r\n") != std::string::npos ||
        value.find_first_of("\r\n") != std::string::npos) {
      return Status::InvalidArgument("nats: header '" + name + "' has a character NATS refuses");
    }
  }
  return Status::Ok();
}

class NatsPublisher final : public Publisher {
 public:
  explicit NatsPublisher(std::string url) : conn_(std::move(url)) {
    jsOptions_Init(&jo_);
    jo_.PublishAsync.AckHandler = &NatsPublisher::OnAck;
    jo_.PublishAsync.AckHandlerClosure = this;
    jo_.PublishAsync.MaxPending = 20'000;
  }

  std::vector<Status> Publish(const std::vector<Message>& batch,
                              std::chrono::milliseconds timeout) override {
    std::vector<Status> out(batch.size());
    if (Status s = conn_.Ensure(&jo_); !s.ok()) {
      for (Status& o : out) o = s;
      return out;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      results_ = &out;
      index_.clear();
    }
    // Every stream first: right after a restart JetStream answers "no responders" until a
    // stream is loaded, and a key's later message must not be stored after its earlier one failed.
    std::vector<bool> send(batch.size(), false);
    for (size_t i = 0; i < batch.size(); ++i) {
      out[i] = CheckMessage(batch[i]);
      if (!out[i].ok()) continue;  // refused
      if (Status s = conn_.EnsureStream(batch[i].topic); !s.ok()) {
        for (size_t j = 0; j < batch.size(); ++j) {
          if (j >= i || out[j].ok()) out[j] = s;
        }
        return Done(out);
      }
      send[i] = true;
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!send[i]) continue;
      if (Status s = Send(batch[i], i); !s.ok()) {  // nothing after it is sent
        for (size_t j = i; j < batch.size(); ++j) {
          if (send[j]) out[j] = s;
        }
        break;
      }
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = timeout.count();
    if (js_PublishAsyncComplete(conn_.js(), &po) != NATS_OK) {
      natsMsgList pending{};
      if (js_PublishAsyncGetPendingList(&pending, conn_.js()) == NATS_OK) {
        std::lock_guard<std::mutex> lock(mu_);
        for (int i = 0; i < pending.Count; ++i) {
          auto it = index_.find(pending.Msgs[i]);
          if (it != index_.end()) out[it->second] = Status::Timeout("nats: no publish ack in time");
        }
        natsMsgList_Destroy(&pending);
      }
    }
    return Done(out);
  }
  std::string Describe() const override { return conn_.url(); }

 private:
  std::vector<Status>& Done(std::vector<Status>& out) {
    std::lock_guard<std::mutex> lock(mu_);
    results_ = nullptr;
    index_.clear();
    return out;
  }

  Status Send(const Message& m, size_t i) {
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, m.topic.c_str(), nullptr, m.payload.data(),
                                  static_cast<int>(m.payload.size()));
    if (s == NATS_OK && !m.message_id.empty()) {
      s = natsMsgHeader_Set(msg, kMsgIdHeader, m.message_id.c_str());
    }
    if (s == NATS_OK && !m.key.empty()) s = natsMsgHeader_Set(msg, kKeyHeader, m.key.c_str());
    for (const auto& [name, value] : m.headers) {
      if (s == NATS_OK) s = natsMsgHeader_Add(msg, name.c_str(), value.c_str());
    }
    if (s != NATS_OK) {
      natsMsg_Destroy(msg);
      return NatsError(s, "build message");
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      index_[msg] = i;
    }
    natsMsg* owned = msg;
    s = js_PublishMsgAsync(conn_.js(), &owned, nullptr);
    if (s != NATS_OK) {
      std::lock_guard<std::mutex> lock(mu_);
      index_.erase(msg);
      natsMsg_Destroy(owned);
      return NatsError(s, "publish");
    }
    return Status::Ok();
  }

  // On the client's thread, once per published message (ack or error).
  static void OnAck(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    auto* self = static_cast<NatsPublisher*>(closure);
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      auto it = self->index_.find(msg);
      if (it != self->index_.end() && self->results_ != nullptr && pa == nullptr &&
          pae != nullptr) {
        std::string why = pae->ErrText != nullptr ? pae->ErrText : Text(pae->Err);
        (*self->results_)[it->second] =
            pae->ErrCode != 0 ? Status::InvalidArgument("nats: publish refused: " + why)
                              : Status::Unavailable("nats: publish: " + why);
      }
      if (it != self->index_.end()) self->index_.erase(it);
    }
    natsMsg_Destroy(msg);
  }

  Conn conn_;
  jsOptions jo_;
  std::mutex mu_;  // index_ and results_ (the ack handler runs on the client's thread)
  std::map<natsMsg*, size_t> index_;
  std::vector<Status>* results_ = nullptr;
};

class NatsConsumer final : public Consumer {
 public:
  NatsConsumer(std::string url, ConsumerOptions o) : conn_(std::move(url)), o_(std::move(o)) {
    jsOptions_Init(&jo_);
    durable_ = StreamName(o_.group);
  }
  ~NatsConsumer() override { DropSubs(); }

  Result<std::vector<Delivery>> Fetch(size_t max, std::chrono::milliseconds wait) override {
    if (max == 0 || max > 1000) return Status::InvalidArgument("Fetch: max must be 1..1000");
    if (Status s = Subscribe(); !s.ok()) return s;
    std::vector<Delivery> out;
    if (auto now = std::chrono::steady_clock::now(); now < not_before_) {
      std::this_thread::sleep_for(
          std::min<std::chrono::steady_clock::duration>(not_before_ - now, wait));
      if (std::chrono::steady_clock::now() < not_before_) return out;
    }
    // Every topic without waiting first, then each with a share of the wait. A fetch never lasts
    // near redeliver_after: deliveries would be redelivered into the same fetch.
    const int64_t cap_ms = std::max<int64_t>(o_.redeliver_after.count() / 4, 5);
    for (int pass = 0; pass < 2 && out.empty(); ++pass) {
      const int64_t share_ms =
          std::clamp<int64_t>(wait.count() / static_cast<int64_t>(subs_.size()), 5, cap_ms);
      for (size_t t = 0; t < subs_.size() && out.size() < max; ++t) {
        jsFetchRequest req;
        jsFetchRequest_Init(&req);
        req.Batch = static_cast<int>(max - out.size());
        req.NoWait = pass == 0;
        req.Expires = (pass == 0 ? std::min<int64_t>(20, cap_ms) : share_ms) * kNsPerMs;
        natsMsgList list{};
        natsStatus s = natsSubscription_FetchRequest(&list, subs_[t], &req);
        if (s != NATS_OK && s != NATS_TIMEOUT && s != NATS_NOT_FOUND) {
          if (s == NATS_CONNECTION_CLOSED || s == NATS_INVALID_SUBSCRIPTION) DropSubs();
          return NatsError(s, "fetch " + o_.topics[t]);
        }
        for (int i = 0; i < list.Count; ++i) out.push_back(ToDelivery(o_.topics[t], list.Msgs[i]));
        natsMsgList_Destroy(&list);
      }
    }
    return out;
  }

  Status Ack(const Delivery& d) override {
    if (conn_.nc() == nullptr) return Status::Unavailable("nats: not connected");
    natsStatus s = natsConnection_PublishString(conn_.nc(), d.handle.c_str(), "+ACK");
    return s == NATS_OK ? Status::Ok() : NatsError(s, "ack");
  }

 private:
  Status Subscribe() {
    if (!subs_.empty() && natsConnection_Status(conn_.nc()) == NATS_CONN_STATUS_CONNECTED) {
      return Status::Ok();
    }
    DropSubs();
    if (Status s = conn_.Ensure(&jo_); !s.ok()) return s;
    for (const std::string& topic : o_.topics) {
      if (Status s = conn_.EnsureStream(topic); !s.ok()) return s;
      jsSubOptions so;
      jsSubOptions_Init(&so);
      so.Config.AckPolicy = js_AckExplicit;
      so.Config.DeliverPolicy = js_DeliverAll;
      so.Config.AckWait = o_.redeliver_after.count() * kNsPerMs;
      so.Config.MaxAckPending = static_cast<int64_t>(o_.max_unacked);
      natsSubscription* sub = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      natsStatus s =
          js_PullSubscribe(&sub, conn_.js(), topic.c_str(), durable_.c_str(), &jo_, &so, &jerr);
      if (s != NATS_OK) {
        DropSubs();
        return NatsError(s,
                         "subscribe " + topic + " (JetStream error " + std::to_string(jerr) + ")");
      }
      subs_.push_back(sub);
      // Deliveries of an earlier incarnation still unacknowledged: JetStream redelivers expired
      // ones before new messages, so fetching only after redeliver_after keeps the order.
      jsConsumerInfo* ci = nullptr;
      const std::string stream = StreamName(topic);
      natsStatus cis =
          js_GetConsumerInfo(&ci, conn_.js(), stream.c_str(), durable_.c_str(), &jo_, &jerr);
      if (cis == NATS_OK && ci != nullptr) {
        if (ci->NumAckPending > 0) {
          not_before_ = std::chrono::steady_clock::now() + o_.redeliver_after;
        }
        jsConsumerInfo_Destroy(ci);
      }
    }
    return Status::Ok();
  }
  void DropSubs() {
    for (natsSubscription* s : subs_) natsSubscription_Destroy(s);  // the durable stays
    subs_.clear();
  }

  static Delivery ToDelivery(const std::string& topic, natsMsg* msg) {
    Delivery d;
    d.message.topic = topic;
    d.message.payload.assign(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
    const char* reply = natsMsg_GetReply(msg);
    d.handle = reply != nullptr ? reply : "";
    const char** keys = nullptr;
    int count = 0;
    if (natsMsgHeader_Keys(msg, &keys, &count) == NATS_OK) {
      for (int i = 0; i < count; ++i) {
        const char* value = nullptr;
        if (natsMsgHeader_Get(msg, keys[i], &value) != NATS_OK || value == nullptr) continue;
        std::string_view name = keys[i];
        if (name == kMsgIdHeader) {
          d.message.message_id = value;
        } else if (name == kKeyHeader) {
          d.message.key = value;
        } else {
          d.message.headers.emplace_back(keys[i], value);
        }
      }
      std::free(static_cast<void*>(keys));
    }
    return d;
  }

  Conn conn_;
  ConsumerOptions o_;
  jsOptions jo_;
  std::string durable_;
  std::vector<natsSubscription*> subs_;                 // one per topic, in o_.topics order
  std::chrono::steady_clock::time_point not_before_{};  // first fetch after a takeover
};

}  // namespace

Result<std::unique_ptr<Publisher>> OpenNatsPublisher(std::string_view url) {
  Result<HostPort> hp = ParseHostPort(url, "nats", 4222);
  if (!hp.ok()) return hp.status();
  return std::unique_ptr<Publisher>(new NatsPublisher(std::string(url)));
}

Result<std::unique_ptr<Consumer>> OpenNatsConsumer(std::string_view url, ConsumerOptions options) {
  Result<HostPort> hp = ParseHostPort(url, "nats", 4222);
  if (!hp.ok()) return hp.status();
  return std::unique_ptr<Consumer>(new NatsConsumer(std::string(url), std::move(options)));
}

}  // namespace dtx::brokers
