#include "sim/sim_net.h"

#include <fmt/format.h>

#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace dtx::sim {

namespace asio = boost::asio;

namespace {

std::string QueryParam(const std::string& url, const std::string& name) {
  size_t q = url.find('?');
  if (q == std::string::npos) return {};
  size_t pos = q + 1;
  while (pos < url.size()) {
    size_t amp = url.find('&', pos);
    if (amp == std::string::npos) amp = url.size();
    std::string kv = url.substr(pos, amp - pos);
    size_t eq = kv.find('=');
    if (eq != std::string::npos && kv.substr(0, eq) == name) return kv.substr(eq + 1);
    pos = amp + 1;
  }
  return {};
}

enum class Fault {
  kNone,
  kRefused,
  kServerError,
  kOngoing,
  kAnswerLost,
  kSlow,
  kDuplicate,
  kCorrupt
};

// The fault injected into one call (none outside the chaos phase). Error pages only on the msg
// check-back, where a 200 that is not an answer matters (the guarded rule).
Fault ChooseFault(World& world, bool check_back) {
  if (!world.chaos || !world.Chance(world.config.p_call_fault)) return Fault::kNone;
  world.counters.faults += 1;
  switch (world.Uniform(0, check_back ? 7 : 6)) {
    case 0:
      return Fault::kRefused;
    case 1:
      return Fault::kServerError;
    case 2:
      return Fault::kOngoing;
    case 3:
      return Fault::kAnswerLost;
    case 4:
      return Fault::kSlow;
    case 5:
    case 6:
      return Fault::kDuplicate;
    default:
      return Fault::kCorrupt;
  }
}

}  // namespace

SimCaller::SimCaller(World& world, Participants& participants, asio::any_io_executor executor,
                     int node, int incarnation, CallObserver observer)
    : world_(world),
      participants_(participants),
      executor_(std::move(executor)),
      node_(node),
      incarnation_(incarnation),
      observer_(std::move(observer)),
      alive_(std::make_shared<bool>(true)) {}

SimCaller::~SimCaller() {
  *alive_ = false;
  pending_.clear();
}

asio::awaitable<engine::BranchAnswer> SimCaller::Call(engine::BranchCallSpec spec) {
  return asio::async_initiate<decltype(asio::use_awaitable), void(engine::BranchAnswer)>(
      [this, spec = std::move(spec)](auto handler) mutable {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        Start(std::move(spec), [shared, ex = executor_](engine::BranchAnswer answer) {
          asio::post(
              ex, [shared, answer = std::move(answer)]() mutable { (*shared)(std::move(answer)); });
        });
      },
      asio::use_awaitable);
}

void SimCaller::Start(engine::BranchCallSpec spec, Handler handler) {
  const int64_t now = world_.time.now_ms();
  CallRecord rec;
  rec.id = world_.calls.size() + 1;
  rec.node = node_;
  rec.incarnation = incarnation_;
  rec.gid = QueryParam(spec.url, "gid");
  rec.branch_id = QueryParam(spec.url, "branch_id");
  rec.op = QueryParam(spec.url, "op");
  rec.start_ms = now;
  rec.deadline_ms = now + spec.timeout_ms;
  const size_t index = world_.calls.size();
  world_.calls.push_back(rec);
  world_.counters.calls += 1;
  if (observer_) observer_(world_.calls[index]);
  const std::string url = spec.url.substr(0, spec.url.find('?'));

  const uint64_t id = next_pending_++;
  pending_.emplace(id, Pending{std::move(handler), index});
  // The coordinator gives up at the deadline whatever happens to the call.
  world_.time.At(rec.deadline_ms, [this, id, alive = alive_] {
    if (*alive) Complete(id, {0, "timeout (simulated)"});
  });

  const Fault fault = ChooseFault(world_, url == kQueryPrepared);
  static constexpr const char* kFaultNames[] = {
      "",        " [refused]",    " [503]",       " [425]", " [answer lost]",
      " [slow]", " [duplicated]", " [error page]"};
  world_.Trace(fmt::format("n{}.{} call {} {} {} {}{}", node_, incarnation_, rec.gid, rec.branch_id,
                           rec.op, url, kFaultNames[static_cast<int>(fault)]));
  const int64_t latency = world_.Uniform(1, 40);
  switch (fault) {
    case Fault::kRefused:
      world_.time.After(latency, [this, id, alive = alive_] {
        if (*alive) Complete(id, {0, "connection refused (simulated)"});
      });
      return;
    case Fault::kServerError:
    case Fault::kOngoing: {
      const int status = fault == Fault::kServerError ? 503 : 425;
      world_.time.After(latency, [this, id, status, alive = alive_] {
        if (*alive) Complete(id, {status, status == 503 ? "unavailable" : "ONGOING"});
      });
      return;
    }
    case Fault::kAnswerLost:
      Deliver(index, url, /*answer_lost=*/true, latency, id, false);
      return;
    case Fault::kSlow:
      Deliver(index, url, false, spec.timeout_ms + world_.Uniform(1, 3 * spec.timeout_ms), id,
              false);
      return;
    case Fault::kDuplicate:
      Deliver(index, url, false, latency, id, false);
      Deliver(index, url, /*answer_lost=*/true, latency + world_.Uniform(0, 2 * spec.timeout_ms), 0,
              false);
      return;
    case Fault::kCorrupt:
      Deliver(index, url, false, latency, id, /*corrupt=*/true);
      return;
    case Fault::kNone:
      Deliver(index, url, false, latency, id, false);
      return;
  }
}

void SimCaller::Deliver(size_t record, const std::string& url, bool answer_lost, int64_t delay_ms,
                        uint64_t pending_id, bool corrupt) {
  // Delivery happens even if this coordinator dies meanwhile: the request is on the wire.
  World* world = &world_;
  Participants* parts = &participants_;
  std::shared_ptr<bool> alive = alive_;
  world_.time.After(delay_ms, [=, this] {
    CallRecord& rec = world->calls[record];
    Answer a = parts->Handle(url, rec.gid, rec.branch_id, rec.op);
    if (rec.delivered_ms < 0) rec.delivered_ms = world->time.now_ms();
    rec.answer_status = a.status;
    if (corrupt) a = {200, "<html><body>502 Bad Gateway</body></html>"};
    if (answer_lost || pending_id == 0) return;
    world->time.After(world->Uniform(1, 40), [=, this] {
      if (*alive) Complete(pending_id, {a.status, a.body});
    });
  });
}

void SimCaller::Complete(uint64_t pending_id, engine::BranchAnswer answer) {
  auto it = pending_.find(pending_id);
  if (it == pending_.end()) return;  // answered already (or timed out)
  world_.calls[it->second.record].end_ms = world_.time.now_ms();
  Handler h = std::move(it->second.handler);
  pending_.erase(it);
  h(std::move(answer));
}

}  // namespace dtx::sim
