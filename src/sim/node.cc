#include "sim/node.h"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace dtx::sim {

namespace asio = boost::asio;

Node::Node(World& world, SimDisk& disk, Participants& participants, int index, int64_t skew_ms,
           CallObserver call_observer, AckObserver ack_observer)
    : world_(world),
      disk_(disk),
      participants_(participants),
      index_(index),
      clock_(world.time, skew_ms),
      timers_(world.time, clock_),
      call_observer_(std::move(call_observer)),
      ack_observer_(std::move(ack_observer)) {}

Node::~Node() {
  if (up()) Crash();
}

void Node::Start() {
  if (up()) return;
  ++incarnation_;
  world_.Trace(fmt::format("n{}.{} starts", index_, incarnation_));
  const Config& c = world_.config;
  engine::EngineOptions o;
  o.settings.retry_interval_ms = c.retry_interval_ms;
  o.settings.timeout_to_fail_ms = c.timeout_to_fail_ms;
  o.settings.request_timeout_ms = c.request_timeout_ms;
  o.settings.max_retry_interval_ms = c.max_retry_interval_ms;
  o.cron_interval_ms = c.cron_interval_ms;
  o.claim_batch = 16;
  o.max_active_transactions = c.max_active_transactions;
  o.owner = fmt::format("n{}.{}", index_, incarnation_);
  pool_ = std::make_unique<runtime::IoPool>(1);
  store_ = std::make_unique<SimStore>(world_, disk_, index_);
  const int node = index_;
  const int inc = incarnation_;
  engine_ = std::make_unique<engine::Engine>(
      o, *store_, *pool_, clock_, nullptr,
      [this, node, inc](asio::any_io_executor ex) {
        return std::make_unique<SimCaller>(world_, participants_, ex, node, inc, call_observer_);
      },
      &timers_);
  world_.driver.Add(&pool_->Get(0), index_);
  engine_->Start();
}

void Node::Crash() {
  if (!up()) return;
  world_.counters.crashes += 1;
  world_.Trace(fmt::format("n{}.{} killed (kill -9)", index_, incarnation_));
  engine_->Stop();
  store_->Crash();
  for (const auto& rpc : rpcs_) {
    rpc->result = Status::Unavailable("connection reset (coordinator died)");
    rpc->signal.cancel();
  }
  rpcs_.clear();
  engine_->Shutdown();
  world_.driver.Remove(&pool_->Get(0));
  pool_.reset();
  engine_.reset();
  store_.reset();
  if (paused_) {
    world_.driver.SetPaused(index_, false);
    paused_ = false;
  }
}

void Node::Pause(int64_t duration_ms) {
  if (!up() || paused_) return;
  world_.counters.pauses += 1;
  world_.Trace(fmt::format("n{}.{} paused for {} ms", index_, incarnation_, duration_ms));
  paused_ = true;
  world_.driver.SetPaused(index_, true);
  const int inc = incarnation_;
  world_.time.After(duration_ms, [this, inc] {
    if (incarnation_ != inc || !paused_) return;
    paused_ = false;
    world_.driver.SetPaused(index_, false);
    world_.Trace(fmt::format("n{}.{} resumes", index_, incarnation_));
  });
}

asio::awaitable<Status> Node::Call(asio::any_io_executor client_executor, std::string what, Op op) {
  if (!up()) co_return Status::Unavailable("connection refused (coordinator down)");
  auto rpc = std::make_shared<Rpc>(client_executor);
  rpcs_.insert(rpc);
  engine::Engine* engine = engine_.get();
  const int inc = incarnation_;
  auto body = [this, rpc, engine, op = std::move(op), what, inc]() -> asio::awaitable<void> {
    Status s = co_await op(*engine);
    if (incarnation_ != inc || !rpcs_.count(rpc)) co_return;
    ack_observer_(index_, what, s);
    rpc->result = std::move(s);
    rpc->signal.cancel();
    rpcs_.erase(rpc);
  };
  asio::co_spawn(pool_->Get(0), std::move(body), asio::detached);
  while (!rpc->result) co_await rpc->signal.async_wait(asio::as_tuple(asio::use_awaitable));
  co_return *rpc->result;
}

}  // namespace dtx::sim
