// AMQP (RabbitMQ) adapter: see amqp.h.
#include "brokers/amqp.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <string>
#include <vector>

namespace dtx::brokers {
namespace {

constexpr const char* kKeyHeader = "dtx-key";
constexpr amqp_channel_t kChannel = 1;
using Clock = std::chrono::steady_clock;

amqp_bytes_t Bytes(const std::string& s) {
  return {s.size(), const_cast<char*>(s.data())};  // librabbitmq only reads it
}
std::string Str(amqp_bytes_t b) { return {static_cast<const char*>(b.bytes), b.len}; }

timeval ToTimeval(std::chrono::milliseconds d) {
  const int64_t ms = std::max<int64_t>(d.count(), 0);
  return {static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000 * 1000)};
}

// Where to connect, from amqp://[user[:password]@]host[:port][/vhost][?exchange=NAME].
struct Endpoint {
  std::string user = "guest", password = "guest", host, vhost = "/", exchange = "dtx";
  int port = 5672;
  std::string described;  // the URL without credentials, for logs
};

Result<Endpoint> ParseUrl(std::string_view url) {
  if (!url.starts_with("amqp://")) {
    return Status::InvalidArgument("broker URL '" + std::string(url) +
                                   "' does not start with amqp://");
  }
  Endpoint e;
  std::string_view base = url;
  if (size_t q = url.find('?'); q != std::string_view::npos) {
    base = url.substr(0, q);
    std::string_view query = url.substr(q + 1);
    if (!query.starts_with("exchange=") || query.size() == 9 ||
        query.find('&') != std::string_view::npos) {
      return Status::InvalidArgument("amqp URL '" + std::string(url) +
                                     "': the only query parameter is exchange=NAME");
    }
    e.exchange = std::string(query.substr(9));
  }
  std::string_view authority = base.substr(7, base.find('/', 7) - 7);
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    authority = authority.substr(at + 1);
  }
  if (authority.empty() || authority.front() == ':') {
    return Status::InvalidArgument("amqp URL '" + std::string(url) + "': no host");
  }
  std::string buf(base);  // amqp_parse_url decodes in place
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK || info.host == nullptr ||
      *info.host == '\0' || info.port <= 0 || info.port > 65535) {
    return Status::InvalidArgument("amqp URL '" + std::string(url) + "' is malformed");
  }
  e.user = info.user;
  e.password = info.password;
  e.host = info.host;
  e.port = info.port;
  if (info.vhost != nullptr && *info.vhost != '\0') e.vhost = info.vhost;
  e.described = "amqp://" + e.host + ":" + std::to_string(e.port) +
                (e.vhost == "/" ? std::string() : "/" + e.vhost) +
                (e.exchange == "dtx" ? std::string() : "?exchange=" + e.exchange);
  return e;
}

std::string ReplyText(const amqp_rpc_reply_t& r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "ok";
    case AMQP_RESPONSE_NONE:
      return "no reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        return "connection closed by the broker: " + std::to_string(m->reply_code) + " " +
               Str(m->reply_text);
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        return "channel closed by the broker: " + std::to_string(m->reply_code) + " " +
               Str(m->reply_text);
      }
      return "broker error";
  }
  return "unknown reply";
}

// One connection with channel 1 open. Every failure leaves it closed (the next call reconnects).
class Conn {
 public:
  explicit Conn(Endpoint e) : e_(std::move(e)) {}
  ~Conn() { Drop(); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Connects, logs in, opens the channel and declares the exchange, unless already open.
  Status Ensure(int heartbeat_s) {
    if (state_ != nullptr) return Status::Ok();
    state_ = amqp_new_connection();
    amqp_socket_t* socket = amqp_tcp_socket_new(state_);
    timeval tv = ToTimeval(std::chrono::seconds(2));
    if (socket == nullptr ||
        amqp_socket_open_noblock(socket, e_.host.c_str(), e_.port, &tv) != AMQP_STATUS_OK) {
      Drop();
      return Status::Unavailable("amqp: cannot connect to " + e_.described);
    }
    tv = ToTimeval(std::chrono::seconds(5));
    amqp_set_handshake_timeout(state_, &tv);
    amqp_set_rpc_timeout(state_, &tv);
    amqp_rpc_reply_t r =
        amqp_login(state_, e_.vhost.c_str(), 1, AMQP_DEFAULT_FRAME_SIZE, heartbeat_s,
                   AMQP_SASL_METHOD_PLAIN, e_.user.c_str(), e_.password.c_str());
    if (r.reply_type != AMQP_RESPONSE_NORMAL) return Fail("login to " + e_.described, r);
    amqp_channel_open(state_, kChannel);
    if (Status s = Check("open a channel"); !s.ok()) return s;
    amqp_exchange_declare(state_, kChannel, Bytes(e_.exchange), amqp_cstring_bytes("topic"),
                          /*passive=*/0, /*durable=*/1, /*auto_delete=*/0, /*internal=*/0,
                          amqp_empty_table);
    if (Status s = Check("declare exchange " + e_.exchange); !s.ok()) return s;
    static std::atomic<uint64_t> generations{0};
    generation_ = ++generations;
    return Status::Ok();
  }

  // The result of the last RPC; on failure the connection is dropped.
  Status Check(const std::string& what) {
    amqp_rpc_reply_t r = amqp_get_rpc_reply(state_);
    return r.reply_type == AMQP_RESPONSE_NORMAL ? Status::Ok() : Fail(what, r);
  }

  // Always a transport failure, also when the broker refused (access refused, a missing vhost, a
  // queue declared with other arguments): the connection or its setup failed, not a message, so
  // the relay keeps its rows pending and retries with backoff, logging this, instead of parking
  // every row of the batch; the inbox logs and retries likewise. The fix is the operator's.
  Status Fail(const std::string& what, const amqp_rpc_reply_t& r) {
    std::string msg = "amqp: " + what + ": " + ReplyText(r);
    Drop();
    return Status::Unavailable(msg);
  }

  void Drop() {
    if (state_ == nullptr) return;
    amqp_destroy_connection(state_);  // closes the socket without a handshake: bounded
    state_ = nullptr;
  }

  amqp_connection_state_t state() { return state_; }
  const Endpoint& endpoint() const { return e_; }
  uint64_t generation() const { return generation_; }

 private:
  Endpoint e_;
  amqp_connection_state_t state_ = nullptr;
  uint64_t generation_ = 0;  // unique among the process's connections
};

Status CheckMessage(const Message& m) {
  if (m.topic.empty() || m.topic.size() > 255) {
    return Status::InvalidArgument("amqp: a routing key is 1..255 bytes");
  }
  for (const auto& [name, value] : m.headers) {
    if (name.empty() || name.size() > 255 || name == kKeyHeader) {
      return Status::InvalidArgument("amqp: header name '" + name +
                                     "' is empty, over 255 bytes or reserved");
    }
  }
  if (m.message_id.size() > 255) return Status::InvalidArgument("amqp: message id over 255 bytes");
  return Status::Ok();
}

class AmqpPublisher final : public Publisher {
 public:
  explicit AmqpPublisher(Endpoint e) : conn_(std::move(e)) {}

  std::vector<Status> Publish(const std::vector<Message>& batch,
                              std::chrono::milliseconds timeout) override {
    std::vector<Status> out(batch.size(), Status::Timeout("amqp: no publisher confirm in time"));
    const Clock::time_point deadline = Clock::now() + timeout;
    if (Status s = Connect(); !s.ok()) {
      std::fill(out.begin(), out.end(), s);
      return out;
    }
    std::vector<size_t> by_tag;  // index of the message with delivery tag first_tag + n
    const uint64_t first_tag = next_tag_;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (Status s = CheckMessage(batch[i]); !s.ok()) {
        out[i] = s;
        continue;
      }
      if (Status s = Send(batch[i]); !s.ok()) {  // nothing after it is sent
        for (size_t n = 0; n < by_tag.size(); ++n) out[by_tag[n]] = s;
        for (size_t j = i; j < batch.size(); ++j) out[j] = s;
        conn_.Drop();
        return out;
      }
      by_tag.push_back(i);
      ++next_tag_;
    }
    Confirms c{.out = out, .by_tag = by_tag, .first_tag = first_tag};
    c.resolved.assign(by_tag.size(), false);
    c.returned.assign(by_tag.size(), std::string());
    c.pending = by_tag.size();
    if (Status s = AwaitConfirms(batch, c, deadline); !s.ok()) {
      for (size_t n = 0; n < by_tag.size(); ++n) {
        if (!c.resolved[n]) out[by_tag[n]] = s;
      }
      conn_.Drop();
    } else if (c.pending > 0) {
      conn_.Drop();  // late confirms of this batch must not be taken for the next one's
    }
    if (conn_.state() != nullptr) amqp_maybe_release_buffers(conn_.state());
    return out;
  }
  std::string Describe() const override { return conn_.endpoint().described; }

 private:
  struct Confirms {
    std::vector<Status>& out;
    const std::vector<size_t>& by_tag;
    uint64_t first_tag;
    std::vector<bool> resolved;
    std::vector<std::string> returned;  // why the broker returned it ("" = not returned)
    size_t pending = 0;
  };

  Status Connect() {
    if (conn_.state() != nullptr) return Status::Ok();
    if (Status s = conn_.Ensure(/*heartbeat_s=*/0); !s.ok()) return s;
    amqp_confirm_select(conn_.state(), kChannel);
    if (Status s = conn_.Check("confirm.select"); !s.ok()) return s;
    next_tag_ = 1;  // a channel in confirm mode numbers its publishes from 1
    return Status::Ok();
  }

  Status Send(const Message& m) {
    std::vector<amqp_table_entry_t> entries;
    entries.reserve(m.headers.size() + 1);
    auto add = [&](const std::string& name, const std::string& value) {
      amqp_table_entry_t e;
      e.key = Bytes(name);
      e.value.kind = AMQP_FIELD_KIND_UTF8;
      e.value.value.bytes = Bytes(value);
      entries.push_back(e);
    };
    const std::string key_header = kKeyHeader;
    if (!m.key.empty()) add(key_header, m.key);
    for (const auto& [name, value] : m.headers) add(name, value);
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
    props.delivery_mode = 2;  // persistent
    props.headers.num_entries = static_cast<int>(entries.size());
    props.headers.entries = entries.data();
    if (!m.message_id.empty()) {
      props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
      props.message_id = Bytes(m.message_id);
    }
    int rc = amqp_basic_publish(conn_.state(), kChannel, Bytes(conn_.endpoint().exchange),
                                Bytes(m.topic), /*mandatory=*/1, /*immediate=*/0, &props,
                                Bytes(m.payload));
    if (rc != AMQP_STATUS_OK) {
      return Status::Unavailable(std::string("amqp: publish: ") + amqp_error_string2(rc));
    }
    return Status::Ok();
  }

  // Reads frames until every sent message is confirmed or the deadline; a transport failure or a
  // closed channel is returned (the caller drops the connection).
  Status AwaitConfirms(const std::vector<Message>& batch, Confirms& c, Clock::time_point deadline) {
    while (c.pending > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return Status::Ok();
      timeval tv = ToTimeval(left);
      amqp_frame_t frame;
      int rc = amqp_simple_wait_frame_noblock(conn_.state(), &frame, &tv);
      if (rc == AMQP_STATUS_TIMEOUT) return Status::Ok();
      if (rc != AMQP_STATUS_OK) {
        return Status::Unavailable(std::string("amqp: waiting for confirms: ") +
                                   amqp_error_string2(rc));
      }
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;
      switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
          auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
          Resolve(c, ack->delivery_tag, ack->multiple != 0, /*ack=*/true);
          break;
        }
        case AMQP_BASIC_NACK_METHOD: {
          auto* nack = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
          Resolve(c, nack->delivery_tag, nack->multiple != 0, /*ack=*/false);
          break;
        }
        case AMQP_BASIC_RETURN_METHOD:
          if (Status s = OnReturn(frame, batch, c); !s.ok()) return s;
          break;
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD: {
          amqp_rpc_reply_t r{};
          r.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION;
          r.reply = frame.payload.method;
          return Status::Unavailable("amqp: " + ReplyText(r));
        }
        default:
          break;
      }
    }
    return Status::Ok();
  }

  void Resolve(Confirms& c, uint64_t tag, bool multiple, bool ack) {
    const uint64_t end = c.first_tag + c.by_tag.size();
    if (tag < c.first_tag && !multiple) return;  // an earlier batch's
    for (uint64_t t = multiple ? c.first_tag : tag; t <= tag && t < end; ++t) {
      const size_t n = t - c.first_tag;
      if (c.resolved[n]) continue;
      c.resolved[n] = true;
      --c.pending;
      Status& s = c.out[c.by_tag[n]];
      if (!ack) {
        s = Status::Unavailable("amqp: the broker nacked the message");
      } else if (!c.returned[n].empty()) {
        s = Status::Unavailable(c.returned[n]);
      } else {
        s = Status::Ok();
      }
    }
  }

  // basic.return (with the message's header and body frames): the broker confirms the message
  // next; remember why it came back. The message is found by its id among the unconfirmed ones.
  Status OnReturn(const amqp_frame_t& frame, const std::vector<Message>& batch, Confirms& c) {
    auto* ret = static_cast<amqp_basic_return_t*>(frame.payload.method.decoded);
    std::string why = "amqp: " + std::to_string(ret->reply_code) + " " + Str(ret->reply_text) +
                      ": no queue is bound for routing key '" + Str(ret->routing_key) +
                      "' on exchange '" + Str(ret->exchange) + "' (the row stays pending)";
    amqp_message_t msg;
    amqp_rpc_reply_t r = amqp_read_message(conn_.state(), frame.channel, &msg, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      return Status::Unavailable("amqp: reading a returned message: " + ReplyText(r));
    }
    std::string id = (msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0
                         ? Str(msg.properties.message_id)
                         : std::string();
    amqp_destroy_message(&msg);
    for (size_t n = 0; n < c.by_tag.size(); ++n) {
      if (!c.resolved[n] && c.returned[n].empty() && batch[c.by_tag[n]].message_id == id) {
        c.returned[n] = why;
        break;
      }
    }
    return Status::Ok();
  }

  Conn conn_;
  uint64_t next_tag_ = 1;
};

class AmqpConsumer final : public Consumer {
 public:
  AmqpConsumer(Endpoint e, ConsumerOptions o) : conn_(std::move(e)), o_(std::move(o)) {}

  Result<std::vector<Delivery>> Fetch(size_t max, std::chrono::milliseconds wait) override {
    if (max == 0 || max > 1000) return Status::InvalidArgument("Fetch: max must be 1..1000");
    if (Status s = Subscribe(); !s.ok()) return s;
    std::vector<Delivery> out;
    const Clock::time_point deadline = Clock::now() + wait;
    while (out.size() < max) {
      amqp_maybe_release_buffers(conn_.state());
      auto left =
          out.empty()
              ? std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now())
              : std::chrono::milliseconds(0);
      timeval tv = ToTimeval(left);
      amqp_envelope_t env;
      amqp_rpc_reply_t r = amqp_consume_message(conn_.state(), &env, &tv, 0);
      if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        out.push_back(ToDelivery(env));
        amqp_destroy_envelope(&env);
        continue;
      }
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
          r.library_error == AMQP_STATUS_TIMEOUT) {
        break;
      }
      Status s = r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                         r.library_error == AMQP_STATUS_UNEXPECTED_STATE
                     ? OtherFrame()
                     : Status::Unavailable("amqp: consume: " + ReplyText(r));
      if (s.ok()) continue;
      conn_.Drop();
      if (!out.empty()) break;  // their acks fail; the broker delivers them again
      return s;
    }
    return out;
  }

  Status Ack(const Delivery& d) override {
    size_t colon = d.handle.find(':');
    uint64_t generation = 0, tag = 0;
    std::from_chars(d.handle.data(), d.handle.data() + colon, generation);
    std::from_chars(d.handle.data() + colon + 1, d.handle.data() + d.handle.size(), tag);
    if (conn_.state() == nullptr || generation != conn_.generation()) {
      return Status::Unavailable("amqp: the delivery's connection is gone (delivered again)");
    }
    int rc = amqp_basic_ack(conn_.state(), kChannel, tag, /*multiple=*/0);
    if (rc != AMQP_STATUS_OK) {
      conn_.Drop();
      return Status::Unavailable(std::string("amqp: ack: ") + amqp_error_string2(rc));
    }
    return Status::Ok();
  }

 private:
  Status Subscribe() {
    if (conn_.state() != nullptr) return Status::Ok();
    const int heartbeat_s =
        static_cast<int>(std::clamp<int64_t>(o_.redeliver_after.count() / 2000, 1, 60));
    if (Status s = conn_.Ensure(heartbeat_s); !s.ok()) return s;
    amqp_connection_state_t st = conn_.state();
    const std::string queue = conn_.endpoint().exchange + "." + o_.group;
    amqp_table_entry_t sac;
    sac.key = amqp_cstring_bytes("x-single-active-consumer");
    sac.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    sac.value.value.boolean = 1;
    amqp_table_t args{1, &sac};
    amqp_queue_declare(st, kChannel, Bytes(queue), /*passive=*/0, /*durable=*/1,
                       /*exclusive=*/0, /*auto_delete=*/0, args);
    if (Status s = conn_.Check("declare queue " + queue); !s.ok()) return s;
    for (const std::string& topic : o_.topics) {
      amqp_queue_bind(st, kChannel, Bytes(queue), Bytes(conn_.endpoint().exchange), Bytes(topic),
                      amqp_empty_table);
      if (Status s = conn_.Check("bind queue " + queue + " to " + topic); !s.ok()) return s;
    }
    const auto prefetch = static_cast<uint16_t>(std::clamp<size_t>(o_.max_unacked, 1, 65535));
    amqp_basic_qos(st, kChannel, 0, prefetch, /*global=*/0);
    if (Status s = conn_.Check("basic.qos"); !s.ok()) return s;
    amqp_basic_consume(st, kChannel, Bytes(queue), Bytes(o_.consumer), /*no_local=*/0,
                       /*no_ack=*/0, /*exclusive=*/0, amqp_empty_table);
    return conn_.Check("consume from queue " + queue);
  }

  // A frame other than a delivery: a cancel or a close ends the subscription.
  Status OtherFrame() {
    amqp_frame_t frame;
    timeval tv = ToTimeval(std::chrono::seconds(1));
    int rc = amqp_simple_wait_frame_noblock(conn_.state(), &frame, &tv);
    if (rc != AMQP_STATUS_OK) {
      return Status::Unavailable(std::string("amqp: consume: ") + amqp_error_string2(rc));
    }
    if (frame.frame_type != AMQP_FRAME_METHOD) return Status::Ok();
    switch (frame.payload.method.id) {
      case AMQP_BASIC_CANCEL_METHOD:
        return Status::Unavailable("amqp: the broker cancelled the consumer (queue deleted?)");
      case AMQP_CHANNEL_CLOSE_METHOD:
      case AMQP_CONNECTION_CLOSE_METHOD: {
        amqp_rpc_reply_t r{};
        r.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION;
        r.reply = frame.payload.method;
        return Status::Unavailable("amqp: " + ReplyText(r));
      }
      default:
        return Status::Ok();
    }
  }

  Delivery ToDelivery(const amqp_envelope_t& env) const {
    Delivery d;
    d.message.topic = Str(env.routing_key);
    d.message.payload = Str(env.message.body);
    const amqp_basic_properties_t& p = env.message.properties;
    if ((p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0) d.message.message_id = Str(p.message_id);
    if ((p._flags & AMQP_BASIC_HEADERS_FLAG) != 0) {
      for (int i = 0; i < p.headers.num_entries; ++i) {
        const amqp_table_entry_t& e = p.headers.entries[i];
        if (e.value.kind != AMQP_FIELD_KIND_UTF8 && e.value.kind != AMQP_FIELD_KIND_BYTES) {
          continue;  // dtx writes strings only
        }
        std::string name = Str(e.key), value = Str(e.value.value.bytes);
        if (name == kKeyHeader) {
          d.message.key = std::move(value);
        } else {
          d.message.headers.emplace_back(std::move(name), std::move(value));
        }
      }
    }
    d.handle = std::to_string(conn_.generation()) + ":" + std::to_string(env.delivery_tag);
    return d;
  }

  Conn conn_;
  ConsumerOptions o_;
};

}  // namespace

Result<std::unique_ptr<Publisher>> OpenAmqpPublisher(std::string_view url) {
  Result<Endpoint> e = ParseUrl(url);
  if (!e.ok()) return e.status();
  return std::unique_ptr<Publisher>(new AmqpPublisher(std::move(e.value())));
}

Result<std::unique_ptr<Consumer>> OpenAmqpConsumer(std::string_view url, ConsumerOptions options) {
  Result<Endpoint> e = ParseUrl(url);
  if (!e.ok()) return e.status();
  return std::unique_ptr<Consumer>(new AmqpConsumer(std::move(e.value()), std::move(options)));
}

}  // namespace dtx::brokers
