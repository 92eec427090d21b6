// The relay loop: see relay.h.
#include "relay/relay.h"

#include <spdlog/spdlog.h>

#include <memory>
#include <thread>
#include <vector>

#include "brokers/broker.h"
#include "dtx/outbox.h"
#include "relay/source.h"

namespace dtx::relay {
namespace {

constexpr size_t kRetentionBatch = 1000;
constexpr auto kRetentionEvery = std::chrono::seconds(10);
constexpr auto kStopCheck = std::chrono::milliseconds(200);
constexpr auto kBusyWaitMin = std::chrono::milliseconds(5);
constexpr auto kBusyWaitMax = std::chrono::milliseconds(100);

// Sleeps up to `d`, waking early when `stop` is set.
void SleepUnlessStopped(std::chrono::milliseconds d, const std::atomic<bool>& stop) {
  auto until = std::chrono::steady_clock::now() + d;
  while (!stop.load() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(
        std::min<std::chrono::milliseconds>(d, std::chrono::milliseconds(50)));
  }
}

// The message of a row, or why the row cannot be one (rows may be written with plain SQL).
Result<brokers::Message> ToMessage(const OutboxRow& row) {
  Result<std::vector<std::pair<std::string, std::string>>> headers =
      DecodeOutboxHeaders(row.headers);
  if (!headers.ok()) return headers.status();
  OutboxMessage m{.topic = row.topic,
                  .key = row.key,
                  .payload = row.payload,
                  .headers = std::move(headers.value()),
                  .message_id = row.message_id};
  if (Status s = ValidateOutboxMessage(m); !s.ok()) return s;
  if (m.message_id.empty()) return Status::InvalidArgument("outbox: empty message_id");
  return brokers::Message{.topic = std::move(m.topic),
                          .key = std::move(m.key),
                          .message_id = std::move(m.message_id),
                          .payload = std::move(m.payload),
                          .headers = std::move(m.headers)};
}

int64_t MicrosSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t)
      .count();
}

class Worker {
 public:
  Worker(const RelayOptions& o, int index, const std::atomic<bool>& stop, RelayStats& stats)
      : o_(o), index_(index), stop_(stop), stats_(stats) {}

  void Run() {
    while (!stop_.load()) {
      if (!Connected()) continue;
      const auto t0 = std::chrono::steady_clock::now();
      Result<std::vector<OutboxRow>> rows = source_->Claim(o_.batch);
      stats_.claim_us += MicrosSince(t0);
      if (!rows.ok()) {
        Fail("claim", rows.status());
        source_.reset();  // reconnect
        continue;
      }
      if (rows.value().empty()) {
        Idle();
        continue;
      }
      source_->DisarmWakeup();  // writers stop notifying while rows come
      busy_wait_ = kBusyWaitMin;
      PublishAndMark(rows.value());
    }
  }

 private:
  bool Connected() {
    if (source_ != nullptr) return true;
    Result<std::unique_ptr<OutboxSource>> s = OpenSource(o_.source, o_.table, /*exclusive=*/false);
    if (!s.ok()) {
      Fail("outbox database", s.status());
      return false;
    }
    source_ = std::move(s.value());
    source_->SetKeyShare(o_.workers, index_);
    return true;
  }

  // No row was claimed. Writers notify only an armed relay (docs/outbox.md "Wake-up"): arm, claim
  // once more, then wait for a NOTIFY; while a writer is in flight the arm fails and the relay
  // looks again after a short wait (5 ms doubling to 100 ms).
  void Idle() {
    Retention();
    if (source_->Armed()) return Wait(o_.poll_interval);
    switch (source_->ArmWakeup()) {
      case OutboxSource::Wakeup::kArmed:
        busy_wait_ = kBusyWaitMin;
        return;
      case OutboxSource::Wakeup::kBusy:
        Wait(std::min(busy_wait_, o_.poll_interval));
        busy_wait_ = std::min(busy_wait_ * 2, kBusyWaitMax);
        return;
      case OutboxSource::Wakeup::kPoll:
        return Wait(o_.poll_interval);
    }
  }

  // Until a NOTIFY, `d`, or stop (checked every 200 ms).
  void Wait(std::chrono::milliseconds d) {
    auto until = std::chrono::steady_clock::now() + d;
    while (!stop_.load()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return;
      if (source_->WaitForRows(std::min<std::chrono::milliseconds>(left, kStopCheck))) return;
    }
  }

  void PublishAndMark(const std::vector<OutboxRow>& rows) {
    std::vector<RowOutcome> outcomes;
    std::vector<brokers::Message> batch;
    std::vector<int64_t> batch_ids;
    for (const OutboxRow& row : rows) {
      Result<brokers::Message> m = ToMessage(row);
      if (!m.ok()) {
        spdlog::warn("relay: row {} parked: {}", row.id, m.status().message());
        outcomes.push_back({row.id, RowOutcome::kMalformed, m.status().message()});
        continue;
      }
      batch.push_back(std::move(m.value()));
      batch_ids.push_back(row.id);
    }
    std::vector<Status> acks;
    const auto t0 = std::chrono::steady_clock::now();
    if (!batch.empty()) acks = publisher_->Publish(batch, o_.publish_timeout);
    const auto t1 = std::chrono::steady_clock::now();
    stats_.publish_us += std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count();
    ++stats_.batches;
    Status transport;
    int64_t published = 0, refused = 0;
    for (size_t i = 0; i < acks.size(); ++i) {
      const Status& a = acks[i];
      if (a.ok()) {
        outcomes.push_back({batch_ids[i], RowOutcome::kPublished, {}});
        ++published;
      } else if (a.code() == Code::kUnavailable || a.code() == Code::kTimeout) {
        if (transport.ok()) transport = a;  // stays pending, untouched: published again later
      } else {
        outcomes.push_back({batch_ids[i], RowOutcome::kRefused, a.message()});
        ++refused;
        spdlog::warn("relay: {} refused row {}: {}", publisher_->Describe(), batch_ids[i],
                     a.message());
      }
    }
    Status finished = source_->Finish(outcomes, o_.max_attempts, o_.delete_published);
    stats_.mark_us += MicrosSince(t1);
    if (Status s = finished; !s.ok()) {
      Fail("mark published", s);  // the acknowledged rows are published again later
      source_.reset();
      return;
    }
    stats_.published += published;
    stats_.refused += refused;
    if (!transport.ok()) {
      ++stats_.transport_failures;
      Fail("broker", transport);
    } else {
      backoff_.Reset();
    }
  }

  void Retention() {
    if (index_ != 0 || o_.retain.count() == 0) return;
    auto now = std::chrono::steady_clock::now();
    if (now < next_retention_) return;
    next_retention_ = now + kRetentionEvery;
    for (int round = 0; round < 100 && !stop_.load(); ++round) {
      Result<int64_t> n = source_->DeletePublished(o_.retain, kRetentionBatch);
      if (!n.ok()) {
        spdlog::warn("relay: retention: {}", n.status().message());
        return;
      }
      stats_.deleted += n.value();
      if (n.value() < static_cast<int64_t>(kRetentionBatch)) return;
    }
  }

  void Fail(std::string_view what, const Status& s) {
    std::chrono::milliseconds wait = backoff_.Next();
    spdlog::warn("relay worker {}: {}: {}; retrying in {} ms", index_, what, s.message(),
                 wait.count());
    SleepUnlessStopped(wait, stop_);
  }

 public:
  std::unique_ptr<brokers::Publisher> publisher_;

 private:
  const RelayOptions& o_;
  int index_;
  const std::atomic<bool>& stop_;
  RelayStats& stats_;
  std::unique_ptr<OutboxSource> source_;
  Backoff backoff_;
  std::chrono::steady_clock::time_point next_retention_{};
  std::chrono::milliseconds busy_wait_ = kBusyWaitMin;
};

Status CheckOptions(const RelayOptions& o) {
  if (o.batch < 1 || o.batch > 10'000) return Status::InvalidArgument("--batch must be 1..10000");
  if (o.workers < 0 || o.workers > 64) {
    return Status::InvalidArgument("--workers must be 1..64 (0: the default)");
  }
  if (o.workers > 1 && o.source.starts_with("sqlite:")) {
    return Status::InvalidArgument("a SQLite outbox has one relay worker (--workers 1)");
  }
  if (o.max_attempts < 1) return Status::InvalidArgument("--max-attempts must be >= 1");
  if (o.delete_published && o.retain.count() != 0) {
    return Status::InvalidArgument("--delete-published keeps no published rows: drop --retain");
  }
  if (o.poll_interval.count() < 1 || o.publish_timeout.count() < 1) {
    return Status::InvalidArgument("--poll-interval and --publish-timeout must be positive");
  }
  return Status::Ok();
}

}  // namespace

int WorkerCount(const RelayOptions& o) {
  if (o.workers != 0) return o.workers;
  return o.source.starts_with("sqlite:") ? 1 : 2;
}

Status RunRelay(const RelayOptions& options, const std::atomic<bool>& stop, RelayStats& stats,
                const std::function<void()>& ready) {
  if (Status s = CheckOptions(options); !s.ok()) return s;
  RelayOptions o = options;
  o.workers = WorkerCount(options);
  std::vector<std::unique_ptr<brokers::Publisher>> publishers;
  for (int i = 0; i < o.workers; ++i) {
    Result<std::unique_ptr<brokers::Publisher>> p =
        brokers::OpenPublisher(o.sink, {.token = o.sink_token, .ca_file = o.sink_ca_file});
    if (!p.ok()) return p.status();
    publishers.push_back(std::move(p.value()));
  }
  // The exclusive source holds the one-relay lock of a SQLite outbox for the relay's lifetime.
  Result<std::unique_ptr<OutboxSource>> first = OpenSource(o.source, o.table, /*exclusive=*/true);
  for (Backoff b; !first.ok() && first.status().code() == Code::kUnavailable && !stop.load();) {
    if (first.status().message().find("another dtx relay") != std::string::npos) break;
    spdlog::warn("relay: outbox database: {}", first.status().message());
    SleepUnlessStopped(b.Next(), stop);
    first = OpenSource(o.source, o.table, true);
  }
  if (!first.ok()) return first.status();
  if (Status s = first.value()->Prepare(o.init); !s.ok()) return s;
  ready();
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::thread> threads;
  for (int i = 0; i < o.workers; ++i) {
    workers.push_back(std::make_unique<Worker>(o, i, stop, stats));
    workers.back()->publisher_ = std::move(publishers[i]);
  }
  for (auto& w : workers) threads.emplace_back([&w] { w->Run(); });
  for (std::thread& t : threads) t.join();
  return Status::Ok();
}

}  // namespace dtx::relay
