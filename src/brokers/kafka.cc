// Kafka adapter: see kafka.h.
#include "brokers/kafka.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <string>
#include <vector>

namespace dtx::brokers {
namespace {

constexpr const char* kMessageIdHeader = "dtx-message-id";
using Clock = std::chrono::steady_clock;

// Errors that mean "this message cannot be produced as it is" (parked by the relay); every other
// delivery error is a transport failure (fate unknown: publish again).
bool IsRefusal(rd_kafka_resp_err_t e) {
  switch (e) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return true;
    default:
      return false;
  }
}

Status KafkaStatus(rd_kafka_resp_err_t e, std::string_view what) {
  std::string msg = "kafka " + std::string(what) + ": " + rd_kafka_err2str(e);
  return IsRefusal(e) ? Status::InvalidArgument(msg) : Status::Unavailable(msg);
}

using Settings = std::vector<std::pair<std::string, std::string>>;

// kafka://h1:p1,h2:p2[?name=value&...]: bootstrap.servers (each host checked) and librdkafka
// settings given in the URL (applied after the adapter's own, so they override them).
struct Endpoint {
  std::string bootstrap;
  Settings settings;
};

Result<Endpoint> ParseUrl(std::string_view url) {
  if (!url.starts_with("kafka://")) return Status::InvalidArgument("not a kafka:// URL");
  Endpoint e;
  std::string_view rest = url.substr(8);
  if (size_t q = rest.find('?'); q != std::string_view::npos) {
    for (std::string_view query = rest.substr(q + 1); !query.empty();) {
      size_t amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos || eq == 0) {
        return Status::InvalidArgument("kafka URL: '" + std::string(pair) +
                                       "' is not name=value (a librdkafka setting)");
      }
      e.settings.emplace_back(pair.substr(0, eq), pair.substr(eq + 1));
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    }
    rest = rest.substr(0, q);
  }
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) rest = rest.substr(0, slash);
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view one = rest.substr(0, comma);
    Result<HostPort> hp = ParseHostPort("kafka://" + std::string(one), "kafka", 9092);
    if (!hp.ok()) return hp.status();
    e.bootstrap +=
        (e.bootstrap.empty() ? "" : ",") + hp.value().host + ":" + std::to_string(hp.value().port);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  if (e.bootstrap.empty()) {
    return Status::InvalidArgument("kafka URL '" + std::string(url) + "': no host");
  }
  return e;
}

Result<rd_kafka_t*> NewClient(rd_kafka_type_t type, Settings settings, const Settings& from_url,
                              void (*dr)(rd_kafka_t*, const rd_kafka_message_t*, void*),
                              void* opaque) {
  settings.insert(settings.end(), from_url.begin(), from_url.end());
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  for (const auto& [k, v] : settings) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return Status::InvalidArgument(std::string("kafka: ") + k + ": " + err);
    }
  }
  if (dr != nullptr) rd_kafka_conf_set_dr_msg_cb(conf, dr);
  rd_kafka_conf_set_opaque(conf, opaque);
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);  // takes conf on success
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::Unavailable(std::string("kafka: ") + err);
  }
  return rk;
}

class KafkaPublisher final : public Publisher {
 public:
  explicit KafkaPublisher(Endpoint e) : e_(std::move(e)) {}
  ~KafkaPublisher() override { Drop(); }

  std::vector<Status> Publish(const std::vector<Message>& batch,
                              std::chrono::milliseconds timeout) override {
    std::vector<Status> out(batch.size(), Status::Timeout("kafka: no delivery report in time"));
    if (Status s = Ensure(); !s.ok()) {
      std::fill(out.begin(), out.end(), s);
      return out;
    }
    ++generation_;
    results_ = &out;
    pending_ = 0;
    const Clock::time_point deadline = Clock::now() + timeout;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (Status s = Produce(batch[i], i, deadline); !s.ok()) {
        for (size_t j = i; j < batch.size(); ++j) out[j] = s;  // nothing after it is produced
        break;
      }
    }
    while (pending_ > 0 && Clock::now() < deadline) rd_kafka_poll(rk_, 20);
    results_ = nullptr;
    if (rd_kafka_fatal_error(rk_, nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) Drop();
    return out;
  }
  // Without the URL's settings: they may hold credentials.
  std::string Describe() const override { return "kafka://" + e_.bootstrap; }

 private:
  struct Slot {
    uint64_t generation;
    size_t index;
  };

  Status Ensure() {
    if (rk_ != nullptr) return Status::Ok();
    Result<rd_kafka_t*> rk = NewClient(RD_KAFKA_PRODUCER,
                                       {{"bootstrap.servers", e_.bootstrap},
                                        {"enable.idempotence", "true"},
                                        {"acks", "all"},
                                        {"linger.ms", "2"},
                                        {"message.timeout.ms", "300000"}},
                                       e_.settings, &KafkaPublisher::OnDelivery, this);
    if (!rk.ok()) return rk.status();
    rk_ = rk.value();
    return Status::Ok();
  }
  void Drop() {
    if (rk_ == nullptr) return;
    rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(rk_, 1000);  // serves the purged messages' reports (ignored: old generation)
    rd_kafka_destroy(rk_);
    rk_ = nullptr;
  }

  Status Produce(const Message& m, size_t i, Clock::time_point deadline) {
    rd_kafka_headers_t* h = rd_kafka_headers_new(m.headers.size() + 1);
    rd_kafka_header_add(h, kMessageIdHeader, -1, m.message_id.data(), m.message_id.size());
    for (const auto& [name, value] : m.headers) {
      rd_kafka_header_add(h, name.c_str(), -1, value.data(), value.size());
    }
    auto* slot = new Slot{generation_, i};
    for (;;) {
      rd_kafka_resp_err_t e = rd_kafka_producev(
          rk_, RD_KAFKA_V_TOPIC(m.topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_KEY(m.key.data(), m.key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(m.payload.data()), m.payload.size()),
          RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(slot), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {  // the headers belong to the message now
        ++pending_;
        return Status::Ok();
      }
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || Clock::now() >= deadline) {
        rd_kafka_headers_destroy(h);
        delete slot;
        return KafkaStatus(e, "produce");
      }
      rd_kafka_poll(rk_, 10);  // the local queue is full: serve reports, then try again
    }
  }

  // On the publishing thread, from rd_kafka_poll.
  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<KafkaPublisher*>(opaque);
    auto* slot = static_cast<Slot*>(m->_private);
    if (slot != nullptr && slot->generation == self->generation_ && self->results_ != nullptr) {
      (*self->results_)[slot->index] =
          m->err == RD_KAFKA_RESP_ERR_NO_ERROR ? Status::Ok() : KafkaStatus(m->err, "delivery");
      --self->pending_;
    }
    delete slot;
  }

  Endpoint e_;
  rd_kafka_t* rk_ = nullptr;
  uint64_t generation_ = 0;  // reports of earlier batches (timed out) are ignored
  std::vector<Status>* results_ = nullptr;
  size_t pending_ = 0;
};

class KafkaConsumer final : public Consumer {
 public:
  KafkaConsumer(Endpoint e, ConsumerOptions o) : e_(std::move(e)), o_(std::move(o)) {}
  ~KafkaConsumer() override {
    if (rk_ != nullptr) {
      rd_kafka_consumer_close(rk_);
      rd_kafka_destroy(rk_);
    }
  }

  Result<std::vector<Delivery>> Fetch(size_t max, std::chrono::milliseconds wait) override {
    if (max == 0 || max > 1000) return Status::InvalidArgument("Fetch: max must be 1..1000");
    if (Status s = Ensure(); !s.ok()) return s;
    std::vector<Delivery> out;
    const Clock::time_point deadline = Clock::now() + wait;
    while (out.size() < max) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      rd_kafka_message_t* m =
          rd_kafka_consumer_poll(rk_, out.empty() ? std::max<int>(0, left.count()) : 0);
      if (m == nullptr) {
        if (!out.empty() || Clock::now() >= deadline) break;
        continue;
      }
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        out.push_back(ToDelivery(m));
      } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && out.empty() &&
                 m->err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        Status s = KafkaStatus(m->err, "consume");
        rd_kafka_message_destroy(m);
        return Status::Unavailable(s.message());
      }
      rd_kafka_message_destroy(m);
    }
    return out;
  }

  Status Ack(const Delivery& d) override {
    if (rk_ == nullptr) return Status::Unavailable("kafka: not connected");
    size_t colon = d.handle.find(':');
    int32_t partition = 0;
    int64_t offset = 0;
    std::from_chars(d.handle.data(), d.handle.data() + colon, partition);
    std::from_chars(d.handle.data() + colon + 1, d.handle.data() + d.handle.size(), offset);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, d.message.topic.c_str(), partition)->offset =
        offset + 1;
    rd_kafka_resp_err_t e = rd_kafka_commit(rk_, list, /*async=*/0);
    rd_kafka_topic_partition_list_destroy(list);
    return e == RD_KAFKA_RESP_ERR_NO_ERROR ? Status::Ok() : KafkaStatus(e, "commit");
  }

 private:
  Status Ensure() {
    if (rk_ != nullptr) return Status::Ok();
    // A dead member's partitions move after session.timeout.ms: redeliver_after, at least 6 s
    // (a broker's default group.min.session.timeout.ms), unless the URL sets it; heartbeats
    // three times per session.
    int64_t session_ms = std::max<int64_t>(o_.redeliver_after.count(), 6000);
    for (const auto& [k, v] : e_.settings) {
      if (k == "session.timeout.ms") session_ms = std::atoll(v.c_str());
    }
    Result<rd_kafka_t*> rk =
        NewClient(RD_KAFKA_CONSUMER,
                  {{"bootstrap.servers", e_.bootstrap},
                   {"group.id", o_.group},
                   {"client.id", o_.consumer},
                   {"enable.auto.commit", "false"},
                   {"auto.offset.reset", "earliest"},
                   {"allow.auto.create.topics", "true"},
                   {"session.timeout.ms", std::to_string(session_ms)},
                   {"heartbeat.interval.ms", std::to_string(std::max<int64_t>(session_ms / 3, 1))}},
                  e_.settings, nullptr, nullptr);
    if (!rk.ok()) return rk.status();
    rk_ = rk.value();
    rd_kafka_poll_set_consumer(rk_);
    rd_kafka_topic_partition_list_t* topics =
        rd_kafka_topic_partition_list_new(static_cast<int>(o_.topics.size()));
    for (const std::string& t : o_.topics) {
      rd_kafka_topic_partition_list_add(topics, t.c_str(), RD_KAFKA_PARTITION_UA);
    }
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk_, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaStatus(e, "subscribe");
    return Status::Ok();
  }

  static Delivery ToDelivery(const rd_kafka_message_t* m) {
    Delivery d;
    d.message.topic = rd_kafka_topic_name(m->rkt);
    if (m->key != nullptr) d.message.key.assign(static_cast<const char*>(m->key), m->key_len);
    if (m->payload != nullptr) {
      d.message.payload.assign(static_cast<const char*>(m->payload), m->len);
    }
    d.handle = std::to_string(m->partition) + ":" + std::to_string(m->offset);
    rd_kafka_headers_t* h = nullptr;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* name = nullptr;
      const void* value = nullptr;
      size_t size = 0;
      for (size_t i = 0;
           rd_kafka_header_get_all(h, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
        std::string v(value != nullptr ? static_cast<const char*>(value) : "", size);
        if (std::string_view(name) == kMessageIdHeader) {
          d.message.message_id = std::move(v);
        } else {
          d.message.headers.emplace_back(name, std::move(v));
        }
      }
    }
    return d;
  }

  Endpoint e_;
  ConsumerOptions o_;
  rd_kafka_t* rk_ = nullptr;
};

}  // namespace

Result<std::unique_ptr<Publisher>> OpenKafkaPublisher(std::string_view url) {
  Result<Endpoint> e = ParseUrl(url);
  if (!e.ok()) return e.status();
  return std::unique_ptr<Publisher>(new KafkaPublisher(std::move(e.value())));
}

Result<std::unique_ptr<Consumer>> OpenKafkaConsumer(std::string_view url, ConsumerOptions options) {
  Result<Endpoint> e = ParseUrl(url);
  if (!e.ok()) return e.status();
  return std::unique_ptr<Consumer>(new KafkaConsumer(std::move(e.value()), std::move(options)));
}

}  // namespace dtx::brokers
