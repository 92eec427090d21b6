// Gauges that need a store read (the due backlog), refreshed when the metrics are scraped rather
// than on a timer: a coordinator nobody scrapes pays nothing.
#include "engine/engine_internal.h"
#include "engine/store_await.h"

namespace dtx::engine {

using asio::awaitable;

awaitable<void> Engine::RefreshMonitoring() {
  const int64_t now = clock_.NowMs();
  int64_t last = due_backlog_at_ms_.load();
  // At most one count per second, whoever scrapes (several scrapers share it).
  if (now - last < 1000 || !due_backlog_at_ms_.compare_exchange_strong(last, now)) co_return;
  Result<int64_t> n = co_await AwaitStore<Result<int64_t>>(
      [&](auto cb) { store_.CountDue(now, kDueBacklogCap, std::move(cb)); });
  if (n.ok()) due_backlog_.store(*n);
}

}  // namespace dtx::engine
