// dtx coordinator sink: see dtx_sink.h.
#include "brokers/dtx_sink.h"

#include <map>
#include <string>

#include "dtx/client.h"
#include "dtx/msg.h"

namespace dtx::brokers {
namespace {

constexpr const char* kMessageIdHeader = "Dtx-Message-Id";
constexpr const char* kKeyHeader = "Dtx-Key";

// A value that would end an HTTP header line early is refused, never sent.
bool HeaderSafe(std::string_view v) {
  for (char c : v) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

Status CheckMessage(const Message& m) {
  if (m.message_id.empty()) return Status::InvalidArgument("dtx: a message needs a message id");
  if (!HeaderSafe(m.key) || !HeaderSafe(m.message_id)) {
    return Status::InvalidArgument("dtx: key or message id with CR, LF or NUL");
  }
  for (const auto& [name, value] : m.headers) {
    if (!HeaderSafe(name) || !HeaderSafe(value) || name.find(':') != std::string::npos) {
      return Status::InvalidArgument("dtx: header '" + name + "' cannot be an HTTP header");
    }
  }
  return Status::Ok();
}

class DtxPublisher final : public Publisher {
 public:
  DtxPublisher(std::string url, std::string api)
      : url_(std::move(url)), client_(std::move(api), ClientOptions{}) {}

  std::vector<Status> Publish(const std::vector<Message>& batch,
                              std::chrono::milliseconds timeout) override {
    std::vector<Status> out(batch.size(), Status::Timeout("dtx: not submitted in time"));
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (std::chrono::steady_clock::now() >= deadline) break;  // the rest: published again
      out[i] = Submit(batch[i]);
      if (out[i].code() == Code::kUnavailable && !topic_missing_) {
        for (size_t j = i + 1; j < batch.size(); ++j) out[j] = out[i];  // the coordinator is down
        break;
      }
    }
    return out;
  }
  std::string Describe() const override { return url_; }

 private:
  Status Submit(const Message& m) {
    topic_missing_ = false;
    if (Status s = CheckMessage(m); !s.ok()) return s;
    std::map<std::string, std::string> headers = {{kMessageIdHeader, m.message_id}};
    if (!m.key.empty()) headers[kKeyHeader] = m.key;
    for (const auto& [name, value] : m.headers) headers[name] = value;
    Msg msg(client_, m.message_id);
    msg.Add("topic://" + m.topic, m.payload).SetBranchHeaders(std::move(headers));
    Status s = msg.Submit();
    if (s.ok()) return s;
    switch (s.code()) {
      case Code::kInvalidArgument:
        if (s.message().find("topic not found") != std::string::npos) {
          topic_missing_ = true;
          return Status::Unavailable("dtx: topic '" + m.topic +
                                     "' has no subscriber on the coordinator (the row stays "
                                     "pending): " +
                                     s.message());
        }
        return Status::InvalidArgument("dtx: submit refused: " + s.message());
      case Code::kConflict:
        return AlreadySubmitted(m, s);
      case Code::kTooLarge:
        return Status::InvalidArgument("dtx: submit refused: " + s.message());
      case Code::kTimeout:
        return s;
      default:  // no answer, 503, 5xx
        return Status::Unavailable("dtx: submit: " + s.message());
    }
  }

  // A 409 to a re-publish: the gid is stored in a state that takes no submit. If it is this
  // message, already submitted or delivered (a relay died between the ack and its mark), the
  // publish is acknowledged; anything else (another kind of transaction under that gid, a failed
  // message) is a refusal.
  Status AlreadySubmitted(const Message& m, const Status& conflict) {
    Result<TransactionInfo> t = client_.Query(m.message_id);
    if (!t.ok()) return Status::Unavailable("dtx: query after a 409: " + t.status().message());
    if (t.value().trans_type == "msg" &&
        (t.value().status == "submitted" || t.value().status == "succeed")) {
      return Status::Ok();
    }
    return Status::InvalidArgument("dtx: submit refused: " + conflict.message() + " (gid is a " +
                                   t.value().trans_type + ", " + t.value().status + ")");
  }

  std::string url_;
  Client client_;
  bool topic_missing_ = false;  // the last Submit's kUnavailable was "topic not found"
};

}  // namespace

Result<std::unique_ptr<Publisher>> OpenDtxPublisher(std::string_view url) {
  Result<HostPort> hp = ParseHostPort(url, "dtx", 36789);
  if (!hp.ok()) return hp.status();
  std::string api =
      "http://" + hp.value().host + ":" + std::to_string(hp.value().port) + "/api/dtmsvr";
  return std::unique_ptr<Publisher>(new DtxPublisher(std::string(url), std::move(api)));
}

}  // namespace dtx::brokers
