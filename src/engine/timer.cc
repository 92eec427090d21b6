#include "engine/timer.h"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>

namespace dtx::engine {
namespace {

namespace asio = boost::asio;

class AsioTimer final : public Timer {
 public:
  AsioTimer(asio::any_io_executor ex, const Clock& clock) : timer_(ex), clock_(clock) {}
  asio::awaitable<void> WaitUntil(int64_t deadline_ms) override {
    timer_.expires_after(
        std::chrono::milliseconds(std::max<int64_t>(0, deadline_ms - clock_.NowMs())));
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  void Cancel() override { timer_.cancel(); }

 private:
  asio::steady_timer timer_;
  const Clock& clock_;
};

class AsioTimerFactory final : public TimerFactory {
 public:
  explicit AsioTimerFactory(const Clock& clock) : clock_(clock) {}
  std::unique_ptr<Timer> NewTimer(asio::any_io_executor ex) override {
    return std::make_unique<AsioTimer>(ex, clock_);
  }

 private:
  const Clock& clock_;
};

}  // namespace

std::unique_ptr<TimerFactory> NewAsioTimerFactory(const Clock& clock) {
  return std::make_unique<AsioTimerFactory>(clock);
}

}  // namespace dtx::engine
