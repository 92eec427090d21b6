#include "sim/sim_store.h"

#include <fmt/format.h>

namespace dtx::sim {

std::optional<core::TransSnapshot> SimDisk::Peek(const std::string& gid) {
  std::optional<core::TransSnapshot> out;
  mem_.Load(gid, [&](Result<std::optional<core::TransSnapshot>> r) {
    if (r.ok()) out = std::move(r).value();
  });
  return out;
}

void SimDisk::Observe(const std::string& gid, const core::TransSnapshot& before) {
  if (!observer_) return;
  std::optional<core::TransSnapshot> after = Peek(gid);
  if (after) observer_(before, *after);
}

SimStore::SimStore(World& world, SimDisk& disk, int node)
    : world_(world), disk_(disk), node_(node), alive_(std::make_shared<bool>(true)) {}

SimStore::~SimStore() { Crash(); }

void SimStore::Crash() {
  if (!*alive_) return;
  *alive_ = false;
  // Operations not applied yet: a write may have reached the disk before the process died.
  for (auto& [id, op] : queued_) {
    world_.time.Cancel(op.event);
    if (op.is_write && world_.Chance(0.5)) {
      world_.Trace(fmt::format("n{} store: an in-flight write lands at the crash", node_));
      op.apply(false, false);
    }
  }
  queued_.clear();
  answers_.clear();
}

void SimStore::Enqueue(bool is_write, Apply apply) {
  if (!*alive_) return;
  int64_t latency = world_.Uniform(0, 3);
  if (world_.chaos && world_.Chance(world_.config.p_store_fault))
    latency += world_.Uniform(50, 1500);
  const int64_t at = std::max(world_.time.now_ms() + latency, last_apply_ms_);
  last_apply_ms_ = at;
  const uint64_t id = next_id_++;
  const uint64_t event = world_.time.At(at, [this, id, alive = alive_] {
    if (*alive) RunOp(id);
  });
  queued_.emplace(id, Op{is_write, std::move(apply), event});
}

void SimStore::RunOp(uint64_t id) {
  auto it = queued_.find(id);
  if (it == queued_.end()) return;
  Op op = std::move(it->second);
  queued_.erase(it);
  bool fail = false;
  bool lose_answer = false;
  if (world_.chaos && world_.Chance(world_.config.p_store_fault)) {
    world_.counters.store_faults += 1;
    if (op.is_write && world_.Chance(0.5)) {
      lose_answer = true;
    } else {
      fail = true;
    }
  }
  std::function<void()> answer = op.apply(fail, lose_answer);
  if (!answer) return;
  const uint64_t aid = id;
  answers_.emplace(aid, std::move(answer));
  world_.time.After(world_.Uniform(0, 2), [this, aid, alive = alive_] {
    if (!*alive) return;
    auto a = answers_.find(aid);
    if (a == answers_.end()) return;
    std::function<void()> fn = std::move(a->second);
    answers_.erase(a);
    fn();
  });
}

namespace {

template <class R>
std::function<void()> Bind(std::function<void(R)> done, R result) {
  return
      [done = std::move(done), result = std::move(result)]() mutable { done(std::move(result)); };
}

}  // namespace

// Queues `op` (which runs the operation on the memory store, calling its callback inline) and
// answers `done` with its result, a simulated failure, or — for a write whose answer is lost — an
// "outcome unknown" kUnavailable after it was applied.
#define DTX_SIM_QUEUE(R, is_write, gid, done, body)                                               \
  Enqueue(                                                                                        \
      is_write,                                                                                   \
      [=, this, done = std::move(done)](bool fail, bool lose) mutable -> std::function<void()> {  \
        if (fail) return Bind<R>(done, R(Status::Unavailable("simulated store failure")));        \
        std::optional<core::TransSnapshot> before;                                                \
        if (!std::string(gid).empty()) before = disk_.Peek(gid);                                  \
        R result = R(Status::Internal("no answer"));                                              \
        auto cb = [&result](R r) { result = std::move(r); };                                      \
        body;                                                                                     \
        if (!std::string(gid).empty())                                                            \
          disk_.Observe(gid, before ? *before : core::TransSnapshot{});                           \
        if (lose) result = R(Status::Unavailable("simulated: connection lost, outcome unknown")); \
        return Bind<R>(done, std::move(result));                                                  \
      })

void SimStore::Create(core::TransSnapshot trans, store::DoneCallback done) {
  std::string gid = trans.global.gid;
  DTX_SIM_QUEUE(Status, true, gid, done, disk_.mem().Create(trans, cb));
}

void SimStore::CreateTakingKeys(core::TransSnapshot trans, store::Callback<bool> done) {
  std::string gid = trans.global.gid;
  DTX_SIM_QUEUE(Result<bool>, true, gid, done, disk_.mem().CreateTakingKeys(trans, cb));
}

void SimStore::Update(store::TransUpdate update, store::DoneCallback done) {
  std::string gid = update.gid;
  Enqueue(true,
          [this, gid, update, done = std::move(done)](bool fail,
                                                      bool lose) mutable -> std::function<void()> {
            if (fail) return Bind<Status>(done, Status::Unavailable("simulated store failure"));
            std::optional<core::TransSnapshot> before = disk_.Peek(gid);
            if (disk_.skip_cas && before) update.expected_status = before->global.status;
            Status result;
            disk_.mem().Update(update, [&](Status s) { result = std::move(s); });
            disk_.Observe(gid, before ? *before : core::TransSnapshot{});
            if (lose) result = Status::Unavailable("simulated: connection lost, outcome unknown");
            return Bind<Status>(done, std::move(result));
          });
}

void SimStore::AddBranches(std::string gid, core::GlobalStatus expected_status,
                           std::vector<core::BranchRow> rows, store::DoneCallback done) {
  DTX_SIM_QUEUE(Status, true, gid, done, disk_.mem().AddBranches(gid, expected_status, rows, cb));
}

void SimStore::HasKeyWaiters(store::Callback<bool> done) {
  const std::string none;
  DTX_SIM_QUEUE(Result<bool>, false, none, done, disk_.mem().HasKeyWaiters(cb));
}

void SimStore::Load(std::string gid, store::Callback<std::optional<core::TransSnapshot>> done) {
  using R = Result<std::optional<core::TransSnapshot>>;
  const std::string none;
  DTX_SIM_QUEUE(R, false, none, done, disk_.mem().Load(gid, cb));
}

void SimStore::List(store::ListQuery query, store::Callback<store::ListPage> done) {
  using R = Result<store::ListPage>;
  const std::string none;
  DTX_SIM_QUEUE(R, false, none, done, disk_.mem().List(query, cb));
}

void SimStore::ClaimDue(int64_t now_ms, int limit, int64_t lease_until_ms, std::string owner,
                        store::Callback<std::vector<std::string>> done) {
  using R = Result<std::vector<std::string>>;
  const std::string none;
  DTX_SIM_QUEUE(R, true, none, done,
                disk_.mem().ClaimDue(now_ms, limit, lease_until_ms, owner, cb));
}

void SimStore::ResetNextCronTime(std::string gid, int64_t now_ms, store::DoneCallback done) {
  DTX_SIM_QUEUE(Status, true, gid, done, disk_.mem().ResetNextCronTime(gid, now_ms, cb));
}

void SimStore::ResetCronTime(int64_t now_ms, int64_t timeout_ms, int limit,
                             store::Callback<int64_t> done) {
  using R = Result<int64_t>;
  const std::string none;
  DTX_SIM_QUEUE(R, true, none, done, disk_.mem().ResetCronTime(now_ms, timeout_ms, limit, cb));
}

void SimStore::KvGet(std::string cat, std::string k,
                     store::Callback<std::optional<store::KvRow>> done) {
  using R = Result<std::optional<store::KvRow>>;
  const std::string none;
  DTX_SIM_QUEUE(R, false, none, done, disk_.mem().KvGet(cat, k, cb));
}

void SimStore::KvQuery(std::string cat, std::string k,
                       store::Callback<std::vector<store::KvRow>> done) {
  using R = Result<std::vector<store::KvRow>>;
  const std::string none;
  DTX_SIM_QUEUE(R, false, none, done, disk_.mem().KvQuery(cat, k, cb));
}

void SimStore::KvScan(std::string cat, int64_t before_id, int limit,
                      store::Callback<store::KvPage> done) {
  using R = Result<store::KvPage>;
  const std::string none;
  DTX_SIM_QUEUE(R, false, none, done, disk_.mem().KvScan(cat, before_id, limit, cb));
}

void SimStore::KvPut(std::string cat, std::string k, std::string v, int64_t expected_version,
                     int64_t now_ms, store::DoneCallback done) {
  const std::string none;
  DTX_SIM_QUEUE(Status, true, none, done,
                disk_.mem().KvPut(cat, k, v, expected_version, now_ms, cb));
}

void SimStore::KvDelete(std::string cat, std::string k, store::DoneCallback done) {
  const std::string none;
  DTX_SIM_QUEUE(Status, true, none, done, disk_.mem().KvDelete(cat, k, cb));
}

void SimStore::AcquireKeys(std::string gid, bool acquire, int64_t wait_until_ms,
                           store::Callback<core::KeyState> done) {
  using R = Result<core::KeyState>;
  // Under chaos, one decision in ten meets a key another decision holds (PostgreSQL's answer
  // `contended`, store/postgres/keys.h): nothing is acquired nor parked.
  const bool decides = acquire || wait_until_ms > 0;
  DTX_SIM_QUEUE(R, true, gid, done, {
    if (decides && world_.chaos && world_.Chance(0.1)) {
      core::KeyState st = disk_.mem().PeekKeys(gid);
      st.contended = !st.held;
      result = st;
    } else {
      disk_.mem().AcquireKeys(gid, acquire, wait_until_ms, cb);
    }
  });
}

void SimStore::WakeKeyWaiters(int64_t now_ms, int limit,
                              store::Callback<std::vector<std::string>> done) {
  using R = Result<std::vector<std::string>>;
  const std::string none;
  DTX_SIM_QUEUE(R, true, none, done, disk_.mem().WakeKeyWaiters(now_ms, limit, cb));
}

#undef DTX_SIM_QUEUE

}  // namespace dtx::sim
