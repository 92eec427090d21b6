// dtx::Inbox (include/dtx/inbox.h): fetch from the broker seam (src/brokers), apply each delivery
// in one transaction of the consumer's database (inbox_db.h), ack after the commit; retries with
// backoff and the dead-letter table for a handler that keeps failing.
#include "dtx/inbox.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <deque>
#include <exception>
#include <thread>

#include "brokers/broker.h"
#include "sdk/inbox_db.h"
#include "util/backoff.h"

namespace dtx {
namespace inbox_internal {

std::string EncodeHeaders(const std::vector<std::pair<std::string, std::string>>& headers) {
  boost::json::object o;
  for (const auto& [name, value] : headers) o[name] = value;
  return boost::json::serialize(o);
}

std::vector<std::pair<std::string, std::string>> DecodeHeaders(const std::string& json) {
  std::vector<std::pair<std::string, std::string>> out;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(json, ec);
  if (ec || !v.is_object()) return out;
  for (const auto& kv : v.as_object()) {
    if (kv.value().is_string()) {
      out.emplace_back(std::string(kv.key()), std::string(kv.value().as_string()));
    }
  }
  return out;
}

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace inbox_internal

namespace {

using Clock = std::chrono::steady_clock;
using inbox_internal::InboxDb;
constexpr auto kStopCheck = std::chrono::milliseconds(200);
constexpr auto kRetentionEvery = std::chrono::seconds(60);
constexpr size_t kRetentionBatch = 1000;

bool IsConsumerNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

Status CheckOptions(InboxOptions& o) {
  if (o.instance.empty()) o.instance = o.consumer;
  for (const std::string* name : {&o.consumer, &o.instance}) {
    if (name->empty() || name->size() > 128 ||
        !std::all_of(name->begin(), name->end(), IsConsumerNameChar)) {
      return Status::InvalidArgument(
          "inbox: consumer and instance must be 1..128 of [A-Za-z0-9_.-]");
    }
  }
  if (o.topics.empty() || o.topics.size() > 16) {
    return Status::InvalidArgument("inbox: needs 1..16 topics");
  }
  if (o.max_attempts < 1 || o.max_attempts > 100) {
    return Status::InvalidArgument("inbox: max_attempts must be 1..100");
  }
  if (o.batch < 1 || o.batch > 1000) return Status::InvalidArgument("inbox: batch must be 1..1000");
  if (o.retry_base.count() < 1 || o.retry_max < o.retry_base) {
    return Status::InvalidArgument("inbox: need 1 ms <= retry_base <= retry_max");
  }
  return Status::Ok();
}

bool IsTransient(const Status& s) {
  return s.code() == Code::kUnavailable || s.code() == Code::kTimeout;
}

}  // namespace

std::string InboxMessage::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return v;
  }
  return "";
}

class Inbox::Impl {
 public:
  Impl(InboxOptions o, InboxHandler h, std::unique_ptr<InboxDb> db,
       std::unique_ptr<brokers::Consumer> c)
      : o_(std::move(o)), handler_(std::move(h)), db_(std::move(db)), consumer_(std::move(c)) {}

  Result<size_t> Poll(std::chrono::milliseconds wait);
  void Run(const std::atomic<bool>& stop);
  Result<int64_t> RetryDeadLetters(size_t limit);

  InboxOptions o_;
  InboxHandler handler_;
  std::unique_ptr<InboxDb> db_;
  std::unique_ptr<brokers::Consumer> consumer_;
  InboxCounters counters_;

 private:
  // Applies deliveries from the head of queue_ in one transaction, a savepoint each, until one's
  // handler fails or the queue ends; commits, then acknowledges and pops the finished ones
  // (group commit: one fsync for many messages). A failing delivery is then the head: it is
  // parked, or tried again at retry_at_. Returns how many were finished.
  Result<size_t> ApplyRun();
  // After the head's handler failed: true when it was parked, false when it waits for retry_at_.
  Result<bool> HandleFailure(const Status& h);
  InboxMessage ToMessage(const brokers::Delivery& d, int attempt) const;
  Result<bool> Park(const InboxMessage& m);
  Status RunHandler(const InboxMessage& m);
  void Finish();
  std::chrono::milliseconds Backoff(int attempt);
  void Log(const std::string& line) const {
    std::fprintf(stderr, "dtx inbox %s: %s\n", o_.consumer.c_str(), line.c_str());
  }

  std::deque<brokers::Delivery> queue_;  // fetched, not yet finished, in delivery order
  int tries_ = 0;                        // tries of the head in this process
  int attempts_ = 0;                     // counted (non-transient) handler failures of the head
  std::string last_error_;               // of the head's last counted failure
  Clock::time_point retry_at_{};
};

Status Inbox::Impl::RunHandler(const InboxMessage& m) {
  try {
    return handler_(m);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("handler threw: ") + e.what());
  } catch (...) {
    return Status::Internal("handler threw a non-std exception");
  }
}

std::chrono::milliseconds Inbox::Impl::Backoff(int attempt) {
  return RetryBackoff::Delay(attempt, o_.retry_base, o_.retry_max);  // the relay's policy
}

void Inbox::Impl::Finish() {
  if (Status s = consumer_->Ack(queue_.front()); !s.ok()) {
    // Committed but not acknowledged: the broker delivers it again and the dedup skips it.
    ++counters_.ack_failures;
    Log("ack failed (redelivered later, then skipped): " + s.message());
  }
  queue_.pop_front();
  tries_ = 0;
  attempts_ = 0;
  retry_at_ = {};
}

InboxMessage Inbox::Impl::ToMessage(const brokers::Delivery& d, int attempt) const {
  return InboxMessage{.topic = d.message.topic,
                      .key = d.message.key,
                      .message_id = d.message.message_id,
                      .payload = d.message.payload,
                      .headers = d.message.headers,
                      .attempt = attempt};
}

Result<size_t> Inbox::Impl::ApplyRun() {
  const brokers::Delivery& head = queue_.front();
  if (head.message.message_id.empty() || head.message.message_id.size() > 128) {
    InboxMessage m = ToMessage(head, 1);  // cannot be deduplicated: parked at once
    m.message_id = "no-id:" + m.topic + "/" + head.handle;
    attempts_ = o_.max_attempts;
    last_error_ = "message without a usable message_id (1..128 bytes)";
    Result<bool> parked = Park(m);
    if (!parked.ok()) return parked.status();
    return 1;
  }
  if (Status s = db_->Begin(); !s.ok()) return s;
  size_t n = 0;
  std::vector<bool> duplicate;
  Status failed;
  for (; n < queue_.size(); ++n) {
    const brokers::Delivery& d = queue_[n];
    if (d.message.message_id.empty() || d.message.message_id.size() > 128) break;
    Status s = db_->Savepoint();
    Result<bool> fresh = s.ok() ? db_->InsertApplied(o_.consumer, d.message.message_id) : s;
    if (!fresh.ok()) {
      db_->Rollback();
      return fresh.status();
    }
    Status h = fresh.value() ? RunHandler(ToMessage(d, n == 0 ? tries_ + 1 : 1)) : Status::Ok();
    s = h.ok() ? db_->ReleaseSavepoint() : db_->RollbackToSavepoint();
    if (!s.ok()) {
      db_->Rollback();
      return s;
    }
    if (!h.ok()) {
      failed = h;
      break;
    }
    duplicate.push_back(!fresh.value());
  }
  if (n == 0) {
    db_->Rollback();
  } else if (Status c = db_->Commit(); !c.ok()) {
    return c;  // nothing was committed: every delivery stays in the queue
  }
  for (size_t i = 0; i < n; ++i) {
    ++(duplicate[i] ? counters_.duplicates : counters_.applied);
    Finish();
  }
  if (failed.ok()) return n;
  Result<bool> parked = HandleFailure(failed);
  if (!parked.ok()) return parked.status();
  return n + (parked.value() ? 1 : 0);
}

Result<bool> Inbox::Impl::HandleFailure(const Status& h) {
  ++tries_;
  ++counters_.failures;
  if (!IsTransient(h)) ++attempts_;
  const std::string& id = queue_.front().message.message_id;
  if (attempts_ >= o_.max_attempts) {
    last_error_ = h.message();
    return Park(ToMessage(queue_.front(), tries_));
  }
  retry_at_ = Clock::now() + Backoff(IsTransient(h) ? tries_ : attempts_);
  if (tries_ == 1 || attempts_ + 1 == o_.max_attempts) {
    Log("message " + id + " failed (try " + std::to_string(tries_) + "): " + h.message());
  }
  return false;
}

Result<bool> Inbox::Impl::Park(const InboxMessage& m) {
  if (Status s = db_->Begin(); !s.ok()) return s;
  Result<bool> fresh = db_->InsertApplied(o_.consumer, m.message_id);
  Status s = fresh.status();
  if (s.ok() && fresh.value()) {
    s = db_->InsertDeadLetter(o_.consumer, m, attempts_, last_error_);
  }
  if (!s.ok()) {
    db_->Rollback();
    return s;
  }
  if (!fresh.value()) {  // applied meanwhile by another instance
    db_->Rollback();
    ++counters_.duplicates;
  } else {
    if (Status c = db_->Commit(); !c.ok()) return c;
    ++counters_.dead_lettered;
    Log("message " + m.message_id + " dead-lettered after " + std::to_string(attempts_) +
        " attempts: " + last_error_);
  }
  last_error_.clear();
  Finish();
  return true;
}

Result<size_t> Inbox::Impl::Poll(std::chrono::milliseconds wait) {
  const Clock::time_point deadline = Clock::now() + wait;
  if (queue_.empty()) {
    Result<std::vector<brokers::Delivery>> got = consumer_->Fetch(o_.batch, wait);
    if (!got.ok()) return got.status();
    for (brokers::Delivery& d : got.value()) queue_.push_back(std::move(d));
  }
  size_t done = 0;
  while (!queue_.empty()) {
    if (Clock::now() < retry_at_) {
      std::this_thread::sleep_until(std::min(retry_at_, deadline));
      if (Clock::now() < retry_at_) return done;
    }
    Result<size_t> r = ApplyRun();
    if (!r.ok()) return r.status();  // the head stays; the next Poll tries it again
    done += r.value();
  }
  return done;
}

void Inbox::Impl::Run(const std::atomic<bool>& stop) {
  int failures = 0;
  Clock::time_point next_retention = Clock::now();
  while (!stop.load()) {
    Result<size_t> r = Poll(kStopCheck);
    if (!r.ok()) {
      std::chrono::milliseconds wait = Backoff(++failures);
      Log(r.status().message() + "; retrying in " + std::to_string(wait.count()) + " ms");
      for (auto until = Clock::now() + wait; !stop.load() && Clock::now() < until;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      continue;
    }
    failures = 0;
    if (o_.retain.count() > 0 && Clock::now() >= next_retention) {
      next_retention = Clock::now() + kRetentionEvery;
      const int64_t before =
          inbox_internal::NowUnixMs() -
          std::chrono::duration_cast<std::chrono::milliseconds>(o_.retain).count();
      for (int i = 0; i < 100 && !stop.load(); ++i) {
        Result<int64_t> n = db_->DeleteAppliedBefore(o_.consumer, before, kRetentionBatch);
        if (!n.ok()) Log("retention: " + n.status().message());
        if (!n.ok() || n.value() < static_cast<int64_t>(kRetentionBatch)) break;
      }
    }
  }
}

Result<int64_t> Inbox::Impl::RetryDeadLetters(size_t limit) {
  Result<std::vector<dtx::DeadLetter>> dead = db_->ListDeadLetters(o_.consumer, limit);
  if (!dead.ok()) return dead.status();
  int64_t applied = 0;
  for (dtx::DeadLetter& d : dead.value()) {
    d.message.attempt = d.attempts + 1;
    if (Status s = db_->Begin(); !s.ok()) return s;
    Status h = RunHandler(d.message);
    if (h.ok()) h = db_->DeleteDeadLetter(o_.consumer, d.message.message_id);
    if (h.ok()) {
      if (Status c = db_->Commit(); !c.ok()) return c;
      ++applied;
      ++counters_.applied;
      continue;
    }
    db_->Rollback();
    ++counters_.failures;
    if (Status s = db_->RecordDeadLetterFailure(o_.consumer, d.message.message_id, h.message());
        !s.ok()) {
      return s;
    }
  }
  return applied;
}

Inbox::Inbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Inbox::~Inbox() = default;

namespace {

template <typename Conn>
Result<std::unique_ptr<Inbox::Impl>> NewImpl(
    Conn* conn, InboxOptions o, InboxHandler h,
    Result<std::unique_ptr<InboxDb>> (*open_db)(Conn*, inbox_internal::Tables)) {
  if (conn == nullptr || !h)
    return Status::InvalidArgument("inbox: needs a connection and a handler");
  if (Status s = CheckOptions(o); !s.ok()) return s;
  Result<std::unique_ptr<InboxDb>> db = open_db(conn, {o.applied_table, o.dead_letter_table});
  if (!db.ok()) return db.status();
  Result<std::unique_ptr<brokers::Consumer>> c =
      brokers::OpenConsumer(o.broker, {.group = o.consumer,
                                       .consumer = o.instance,
                                       .topics = o.topics,
                                       .redeliver_after = o.redeliver_after,
                                       .max_unacked = o.batch});
  if (!c.ok()) return Status::InvalidArgument("inbox: " + c.status().message());
  return std::make_unique<Inbox::Impl>(std::move(o), std::move(h), std::move(db.value()),
                                       std::move(c.value()));
}

}  // namespace

Result<std::unique_ptr<Inbox>> Inbox::Open(sqlite3* db, InboxOptions o, InboxHandler h) {
  auto impl = NewImpl(db, std::move(o), std::move(h), inbox_internal::OpenSqliteInboxDb);
  if (!impl.ok()) return impl.status();
  return std::unique_ptr<Inbox>(new Inbox(std::move(impl.value())));
}

Result<std::unique_ptr<Inbox>> Inbox::Open(PGconn* conn, InboxOptions o, InboxHandler h) {
  auto impl = NewImpl(conn, std::move(o), std::move(h), inbox_internal::OpenPgInboxDb);
  if (!impl.ok()) return impl.status();
  return std::unique_ptr<Inbox>(new Inbox(std::move(impl.value())));
}

Status Inbox::EnsureTables() { return impl_->db_->EnsureTables(); }
Result<size_t> Inbox::Poll(std::chrono::milliseconds wait) { return impl_->Poll(wait); }
void Inbox::Run(const std::atomic<bool>& stop) { impl_->Run(stop); }
Result<std::vector<DeadLetter>> Inbox::DeadLetters(size_t limit) {
  return impl_->db_->ListDeadLetters(impl_->o_.consumer, limit);
}
Result<int64_t> Inbox::RetryDeadLetters(size_t limit) { return impl_->RetryDeadLetters(limit); }
Result<int64_t> Inbox::DeleteAppliedOlderThan(std::chrono::seconds age, size_t batch) {
  const int64_t before = inbox_internal::NowUnixMs() -
                         std::chrono::duration_cast<std::chrono::milliseconds>(age).count();
  return impl_->db_->DeleteAppliedBefore(impl_->o_.consumer, before, batch);
}
const InboxCounters& Inbox::counters() const { return impl_->counters_; }

}  // namespace dtx
