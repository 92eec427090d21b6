// A simulated coordinator process: the real engine::Engine on a SimStore connection, SimCallers,
// virtual timers and a skewed clock, run by the world's driver on one io_context. It can be killed
// (kill -9: nothing more runs, in-flight store writes land or not), restarted from the shared disk,
// and paused (a GC pause: nothing runs while the world's time goes on).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <set>

#include "engine/engine.h"
#include "runtime/io_pool.h"
#include "sim/participants.h"
#include "sim/sim_net.h"
#include "sim/sim_store.h"

namespace dtx::sim {

// Called with the answer an API call got from the coordinator, at the moment the coordinator
// sends it (the acknowledged-only-what-is-durable invariant looks at the disk then).
using AckObserver = std::function<void(int node, const std::string& what, const Status& status)>;

class Node {
 public:
  Node(World& world, SimDisk& disk, Participants& participants, int index, int64_t skew_ms,
       CallObserver call_observer, AckObserver ack_observer);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  void Start();
  void Crash();
  void Pause(int64_t duration_ms);
  bool up() const { return engine_ != nullptr; }
  int index() const { return index_; }
  int incarnation() const { return incarnation_; }
  const SkewedClock& clock() const { return clock_; }

  using Op = std::function<boost::asio::awaitable<Status>(engine::Engine&)>;
  // Runs `op` against this coordinator on behalf of a client whose coroutine runs on
  // `client_executor`: kUnavailable "connection refused" if it is down, "connection reset" if it
  // dies before answering. `what` names the call for the ack observer.
  boost::asio::awaitable<Status> Call(boost::asio::any_io_executor client_executor,
                                      std::string what, Op op);

 private:
  struct Rpc {
    explicit Rpc(boost::asio::any_io_executor ex)
        : signal(ex, boost::asio::steady_timer::time_point::max()) {}
    boost::asio::steady_timer signal;
    std::optional<Status> result;
  };

  World& world_;
  SimDisk& disk_;
  Participants& participants_;
  int index_;
  int incarnation_ = 0;
  SkewedClock clock_;
  VirtualTimerFactory timers_;
  CallObserver call_observer_;
  AckObserver ack_observer_;
  std::unique_ptr<runtime::IoPool> pool_;
  std::unique_ptr<SimStore> store_;
  std::unique_ptr<engine::Engine> engine_;
  std::set<std::shared_ptr<Rpc>> rpcs_;
  bool paused_ = false;
};

}  // namespace dtx::sim
