#include "sim/virtual_time.h"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace dtx::sim {

namespace asio = boost::asio;

uint64_t VirtualTime::At(int64_t at_ms, std::function<void()> fn) {
  const int64_t t = std::max(at_ms, now_ms_);
  const uint64_t id = next_seq_++;
  events_.emplace(std::make_pair(t, id), std::move(fn));
  time_of_.emplace(id, t);
  return id;
}

void VirtualTime::Cancel(uint64_t id) {
  auto it = time_of_.find(id);
  if (it == time_of_.end()) return;
  events_.erase({it->second, id});
  time_of_.erase(it);
}

int64_t VirtualTime::NextEventTime() const {
  return events_.empty() ? -1 : events_.begin()->first.first;
}

bool VirtualTime::RunNext() {
  if (events_.empty()) return false;
  auto it = events_.begin();
  now_ms_ = std::max(now_ms_, it->first.first);
  std::function<void()> fn = std::move(it->second);
  time_of_.erase(it->first.second);
  events_.erase(it);
  fn();
  return true;
}

namespace {

// Waits on a steady timer that never expires by itself (a signal): the world's event for the
// deadline, or Cancel, cancels it.
class VirtualTimer final : public engine::Timer {
 public:
  VirtualTimer(asio::any_io_executor ex, VirtualTime& time, const SkewedClock& clock)
      : signal_(ex, asio::steady_timer::time_point::max()), time_(time), clock_(clock) {}
  ~VirtualTimer() override { Disarm(); }
  asio::awaitable<void> WaitUntil(int64_t deadline_ms) override {
    if (deadline_ms <= clock_.NowMs()) co_return;
    signal_.expires_at(asio::steady_timer::time_point::max());
    event_ = time_.At(deadline_ms - clock_.skew_ms(), [this] {
      event_ = 0;
      signal_.cancel();
    });
    co_await signal_.async_wait(asio::as_tuple(asio::use_awaitable));
    Disarm();
  }
  void Cancel() override {
    Disarm();
    signal_.cancel();
  }

 private:
  void Disarm() {
    if (event_ != 0) time_.Cancel(event_);
    event_ = 0;
  }
  asio::steady_timer signal_;
  VirtualTime& time_;
  const SkewedClock& clock_;
  uint64_t event_ = 0;
};

}  // namespace

std::unique_ptr<engine::Timer> VirtualTimerFactory::NewTimer(asio::any_io_executor executor) {
  return std::make_unique<VirtualTimer>(executor, time_, clock_);
}

void Driver::Add(asio::io_context* ctx, int group) { contexts_.push_back(Ctx{ctx, group}); }

void Driver::Remove(asio::io_context* ctx) {
  std::erase_if(contexts_, [&](const Ctx& c) { return c.ctx == ctx; });
}

void Driver::SetPaused(int group, bool paused) {
  std::erase(paused_, group);
  if (paused) paused_.push_back(group);
}

size_t Driver::RunReady() {
  size_t ran = 0;
  std::vector<size_t> order;
  for (;;) {
    order.clear();
    for (size_t i = 0; i < contexts_.size(); ++i) {
      if (std::find(paused_.begin(), paused_.end(), contexts_[i].group) == paused_.end()) {
        order.push_back(i);
      }
    }
    std::shuffle(order.begin(), order.end(), rng_);
    bool any = false;
    for (size_t i : order) {
      asio::io_context* ctx = contexts_[i].ctx;
      if (ctx->stopped()) ctx->restart();
      if (ctx->poll_one() > 0) {
        any = true;
        ++ran;
        ++handlers_run_;
        break;  // choose again: another context may go next
      }
    }
    if (!any) return ran;
  }
}

bool Driver::RunUntil(const std::function<bool()>& done, int64_t until_ms) {
  for (;;) {
    RunReady();
    if (done()) return true;
    const int64_t next = time_.NextEventTime();
    if (next < 0 || next > until_ms) return done();
    time_.RunNext();
  }
}

}  // namespace dtx::sim
