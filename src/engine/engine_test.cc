// Engine tests on the in-memory store with a fake participant transport, on fake time
// (engine_test_util.h): rounds, durability order, recovery of stored unfinished work, limits and
// forceStop racing a round. Nothing here waits on the wall clock.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <stdexcept>

#include "engine/engine_test_util.h"
#include "engine/refusal.h"

namespace dtx::engine {
namespace {

namespace asio = boost::asio;
using testing::FakeRuntime;

// Answers by URL path suffix; records calls (when they answer). Used on the test's one thread.
struct FakeNet {
  std::map<std::string, BranchAnswer> answers;  // by URL prefix (without query)
  std::map<std::string, int> delay_ms;          // fake time a call to this URL takes
  std::vector<std::string> calls;               // "url"
  int in_flight = 0;
  int peak_in_flight = 0;
  BranchAnswer For(const std::string& url) {
    calls.push_back(url);
    std::string base = url.substr(0, url.find('?'));
    auto it = answers.find(base);
    return it != answers.end() ? it->second : BranchAnswer{200, R"({"dtm_result":"SUCCESS"})"};
  }
  int DelayFor(const std::string& url) {
    auto it = delay_ms.find(url.substr(0, url.find('?')));
    return it != delay_ms.end() ? it->second : 0;
  }
  size_t Count(const std::string& base) const {
    size_t n = 0;
    for (auto& c : calls) n += c.rfind(base + "?", 0) == 0;
    return n;
  }
};

class FakeCaller final : public BranchCaller {
 public:
  FakeCaller(asio::any_io_executor ex, FakeNet& net, FakeRuntime& rt)
      : ex_(ex), net_(net), rt_(rt) {}
  asio::awaitable<BranchAnswer> Call(BranchCallSpec spec) override {
    net_.in_flight += 1;
    net_.peak_in_flight = std::max(net_.peak_in_flight, net_.in_flight);
    if (int d = net_.DelayFor(spec.url); d > 0) {
      std::unique_ptr<Timer> t = rt_.timers().NewTimer(ex_);
      co_await t->WaitUntil(rt_.clock().NowMs() + d);
    }
    net_.in_flight -= 1;
    co_return net_.For(spec.url);
  }

 private:
  asio::any_io_executor ex_;
  FakeNet& net_;
  FakeRuntime& rt_;
};

core::TransSnapshot Saga(const std::string& gid,
                         std::vector<std::pair<std::string, std::string>> steps) {
  core::TransSnapshot s;
  s.global.gid = gid;
  s.global.trans_type = core::TransType::kSaga;
  int k = 1;
  for (auto& [a, c] : steps) {
    char id[16];
    std::snprintf(id, sizeof id, "%02d", k++);
    core::BranchRow comp;
    comp.branch_id = id;
    comp.op = "compensate";
    comp.url = c;
    core::BranchRow act;
    act.branch_id = id;
    act.op = "action";
    act.url = a;
    s.branches.push_back(comp);
    s.branches.push_back(act);
  }
  return s;
}

Engine::SubmitRequest Req(core::TransSnapshot snap, bool wait_result) {
  Engine::SubmitRequest r;
  r.proposed = std::move(snap);
  r.wait_result = wait_result;
  return r;
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::NewMemoryStore();
    Make({});
  }
  void Make(EngineOptions opts, int64_t retry_interval_ms = 200) {
    Destroy();
    rt_ = std::make_unique<FakeRuntime>();
    opts.settings.retry_interval_ms = retry_interval_ms;
    opts.cron_interval_ms = 50;
    engine_ = std::make_unique<Engine>(
        opts, *store_, rt_->pool(), rt_->clock(), nullptr,
        [this](asio::any_io_executor ex) { return std::make_unique<FakeCaller>(ex, net_, *rt_); },
        &rt_->timers());
  }
  void TearDown() override { Destroy(); }
  void Destroy() {
    if (!engine_) return;
    engine_->Stop();
    rt_->Poll();
    engine_->Shutdown();
    engine_.reset();
    rt_.reset();  // destroys the context, and with it the suspended coroutines
  }
  int64_t Now() { return rt_->clock().NowMs(); }
  // Runs an engine awaitable on fake time until it completes.
  template <class T>
  T Run(asio::awaitable<T> aw) {
    std::optional<T> r = rt_->Run(std::move(aw));
    if (!r) throw std::runtime_error("the engine call did not complete");
    return std::move(*r);
  }
  // Submits without waiting for the answer, then runs until `first_call` has answered and 100 ms
  // more (so that a slower call ordered after it is in flight).
  std::shared_ptr<std::optional<Status>> SubmitUntilCalled(core::TransSnapshot saga,
                                                           const std::string& first_call) {
    auto result = std::make_shared<std::optional<Status>>();
    rt_->Spawn(engine_->Submit(Req(std::move(saga), true)), result);
    EXPECT_TRUE(rt_->RunUntil([&] { return net_.Count(first_call) > 0; }));
    rt_->Advance(100);
    return result;
  }
  Status Await(const std::shared_ptr<std::optional<Status>>& result) {
    EXPECT_TRUE(rt_->RunUntil([&] { return result->has_value(); }));
    return result->has_value() ? **result : Status::Internal("no answer");
  }
  // The stored transaction (the memory store answers inline).
  std::optional<core::TransSnapshot> Load(const std::string& gid) {
    std::optional<core::TransSnapshot> out;
    store_->Load(gid, [&](Result<std::optional<core::TransSnapshot>> r) {
      EXPECT_TRUE(r.ok());
      if (r.ok()) out = std::move(*r);
    });
    return out;
  }
  void Store(const core::TransSnapshot& snap) {
    Status st = Status::Internal("no answer");
    store_->Create(snap, [&](Status s) { st = s; });
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  core::GlobalStatus WaitFinal(const std::string& gid) {
    rt_->RunUntil([&] {
      auto s = Load(gid);
      return s && core::IsFinal(s->global.status);
    });
    auto s = Load(gid);
    return s ? s->global.status : core::GlobalStatus::kPrepared;
  }

  FakeNet net_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<FakeRuntime> rt_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTest, SubmitWithWaitResultSucceeds) {
  Status s = Run(engine_->Submit(
      Req(Saga("g1", {{"http://p/a1", "http://p/c1"}, {"http://p/a2", "http://p/c2"}}), true)));
  EXPECT_TRUE(s.ok()) << s.ToString();
  auto snap = Load("g1");
  ASSERT_TRUE(snap);
  EXPECT_EQ(snap->global.status, core::GlobalStatus::kSucceed);
  EXPECT_EQ(net_.Count("http://p/a1"), 1u);
  EXPECT_EQ(net_.Count("http://p/a2"), 1u);
  EXPECT_EQ(net_.Count("http://p/c1"), 0u);
  EXPECT_EQ(engine_->active_transactions(), 0u);
}

TEST_F(EngineTest, FailureRollsBackAndWaitResultReportsReason) {
  net_.answers["http://p/a2"] = {409, R"({"dtm_result":"FAILURE","message":"no stock"})"};
  Status s = Run(engine_->Submit(
      Req(Saga("g2", {{"http://p/a1", "http://p/c1"}, {"http://p/a2", "http://p/c2"}}), true)));
  EXPECT_EQ(s.code(), Code::kConflict);
  EXPECT_NE(s.message().find("no stock"), std::string::npos);
  EXPECT_EQ(WaitFinal("g2"), core::GlobalStatus::kFailed);
  EXPECT_EQ(net_.Count("http://p/c2"), 1u);
  EXPECT_EQ(net_.Count("http://p/c1"), 1u);
}

TEST_F(EngineTest, ResubmitRules) {
  ASSERT_TRUE(Run(engine_->Submit(Req(Saga("g3", {{"http://p/a1", ""}}), true))).ok());
  Status again = Run(engine_->Submit(Req(Saga("g3", {{"http://p/a1", ""}}), false)));
  EXPECT_EQ(again.code(), Code::kConflict);
  // The engine refuses with facts; the API words them (api/wording_test.cc).
  EXPECT_EQ(again.reason(), refusal::kWrongStatus);
  ASSERT_NE(again.info(), nullptr);
  EXPECT_EQ(again.info()->Fact("op"), "submit");
  EXPECT_EQ(again.info()->Fact("status"), "succeed");
}

TEST_F(EngineTest, RecoveryResumesStoredUnfinishedWork) {
  // A saga left "submitted" by a previous process, already due.
  core::TransSnapshot snap = Saga("g4", {{"http://p/a1", "http://p/c1"}});
  snap.global.status = core::GlobalStatus::kSubmitted;
  snap.global.create_time_ms = Now() - 1000;
  snap.global.next_cron_time_ms = Now() - 1;
  snap.global.next_cron_interval_ms = 200;
  Store(snap);
  engine_->Start();
  EXPECT_EQ(WaitFinal("g4"), core::GlobalStatus::kSucceed);
  EXPECT_EQ(net_.Count("http://p/a1"), 1u);
}

// Recovery claims only what fits under max_active_transactions, counting the transactions it has
// claimed whose rounds have not started yet (the claim loop runs ahead of the loads).
TEST_F(EngineTest, RecoveryNeverRunsMoreRoundsThanTheLimit) {
  EngineOptions opts;
  opts.max_active_transactions = 5;
  Make(opts);
  net_.delay_ms["http://p/slow"] = 100;
  const int64_t now = Now();
  for (int i = 0; i < 40; ++i) {
    core::TransSnapshot snap = Saga("due-" + std::to_string(i), {{"http://p/slow", ""}});
    snap.global.status = core::GlobalStatus::kSubmitted;
    snap.global.next_cron_time_ms = now - 1000;
    snap.global.next_cron_interval_ms = 200;
    Store(snap);
  }
  engine_->Start();
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(WaitFinal("due-" + std::to_string(i)), core::GlobalStatus::kSucceed) << i;
  }
  EXPECT_EQ(net_.Count("http://p/slow"), 40u);
  EXPECT_GE(net_.peak_in_flight, 2) << "rounds did run in parallel";
  EXPECT_LE(net_.peak_in_flight, 5) << "never more rounds than max_active_transactions";
}

TEST_F(EngineTest, ErrorIsRetriedByRecoveryWithBackoff) {
  engine_->Start();
  net_.answers["http://p/flaky"] = {500, "boom"};
  ASSERT_TRUE(Run(engine_->Submit(Req(Saga("g5", {{"http://p/flaky", ""}}), false))).ok());
  const int64_t t0 = Now();
  ASSERT_TRUE(rt_->RunUntil([&] { return net_.Count("http://p/flaky") >= 2; }));
  EXPECT_GE(Now() - t0, 180) << "the retry waited for the backed-off wake-up (200 ms, jittered)";
  auto snap = Load("g5");
  EXPECT_EQ(snap->global.status, core::GlobalStatus::kSubmitted);
  EXPECT_GE(snap->global.next_cron_interval_ms, 400) << "the interval doubled after an error";
  EXPECT_GE(snap->branches[1].attempts, 1);
  EXPECT_NE(snap->branches[1].last_error.find("boom"), std::string::npos);
  net_.answers.erase("http://p/flaky");
  EXPECT_EQ(WaitFinal("g5"), core::GlobalStatus::kSucceed);
}

TEST_F(EngineTest, ActiveLimitRefusesBeforePersisting) {
  EngineOptions opts;
  opts.max_active_transactions = 1;
  Make(opts);
  net_.delay_ms["http://p/slow"] = 500;
  ASSERT_TRUE(Run(engine_->Submit(Req(Saga("held", {{"http://p/slow", ""}}), false))).ok());
  Status refused = Run(engine_->Submit(Req(Saga("refused", {{"http://p/slow", ""}}), false)));
  EXPECT_EQ(refused.code(), Code::kUnavailable);
  EXPECT_FALSE(Load("refused").has_value());
  EXPECT_EQ(WaitFinal("held"), core::GlobalStatus::kSucceed);
}

// Concurrent creates cannot pass the limit together: each takes its place before its store write
// (checking the count of running rounds alone let every create in flight through).
TEST_F(EngineTest, ConcurrentSubmitsNeverPassTheActiveLimit) {
  EngineOptions opts;
  opts.max_active_transactions = 3;
  Make(opts);
  net_.delay_ms["http://p/slow"] = 500;
  std::vector<std::shared_ptr<std::optional<Status>>> results;
  for (int i = 0; i < 12; ++i) {
    results.push_back(std::make_shared<std::optional<Status>>());
    rt_->Spawn(engine_->Submit(Req(Saga("c" + std::to_string(i), {{"http://p/slow", ""}}), false)),
               results.back());
  }
  ASSERT_TRUE(rt_->RunUntil([&] {
    return std::all_of(results.begin(), results.end(), [](auto& r) { return r->has_value(); });
  }));
  int accepted = 0;
  for (int i = 0; i < 12; ++i) {
    const Status& st = **results[static_cast<size_t>(i)];
    if (st.ok()) {
      ++accepted;
    } else {
      EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
      EXPECT_FALSE(Load("c" + std::to_string(i)).has_value()) << "refused before persisting";
    }
  }
  EXPECT_EQ(accepted, 3);
  EXPECT_LE(engine_->active_transactions(), 3u);
  rt_->Advance(1000);
  EXPECT_LE(net_.peak_in_flight, 3) << "never more rounds than max_active_transactions";
}

TEST_F(EngineTest, ForceStopDuringARoundWins) {
  net_.delay_ms["http://p/slow"] = 300;
  ASSERT_TRUE(Run(engine_->Submit(Req(
                      Saga("g6", {{"http://p/slow", "http://p/c"}, {"http://p/a2", ""}}), false)))
                  .ok());
  Status st = Run(engine_->ForceStop("g6"));
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(net_.Count("http://p/slow"), 0u) << "forceStop came while step 1 was in flight";
  rt_->Advance(600);
  EXPECT_EQ(net_.Count("http://p/slow"), 1u);
  auto snap = Load("g6");
  EXPECT_EQ(snap->global.status, core::GlobalStatus::kFailed);
  EXPECT_EQ(snap->global.rollback_reason, "force stopped by operator");
  EXPECT_EQ(net_.Count("http://p/a2"), 0u) << "the abandoned round must not go on";
  Status again = Run(engine_->ForceStop("g6"));
  EXPECT_EQ(again.code(), Code::kConflict);
  EXPECT_EQ(again.reason(), refusal::kAlreadyFinal);
  EXPECT_EQ(Run(engine_->ForceStop("nope")).code(), Code::kNotFound);
}

// Submits a 2-step saga whose step 2 takes 300 ms; returns the stored snapshot and the number of
// store writes so far, taken while step 2 is in flight, and the writes at the end.
struct TwoStepRun {
  core::TransSnapshot mid;
  uint64_t writes_mid = 0;
  uint64_t writes_end = 0;
  core::TransSnapshot end;
};

// With the default retry interval (10 s) the stored wake-up already covers step 2's call (3 s
// timeout + 2 s margin), so step 1's success is held in memory and written with the final update:
// a 2-step saga costs two store writes. Losing the held success in a crash only re-calls step 1.
TEST_F(EngineTest, TwoStepSagaCommitsTwiceAndStepSuccessRidesWithTheNextUpdate) {
  Make({}, 10'000);
  net_.delay_ms["http://p/a2"] = 300;
  const uint64_t before = store_->Stats().write_ops;
  auto fut = SubmitUntilCalled(Saga("w2", {{"http://p/a1", "http://p/c1"}, {"http://p/a2", ""}}),
                               "http://p/a1");  // step 2 is in flight (300 ms)
  ASSERT_EQ(net_.Count("http://p/a1"), 1u);
  ASSERT_EQ(net_.Count("http://p/a2"), 0u);
  auto mid = Load("w2");
  ASSERT_TRUE(mid);
  EXPECT_EQ(mid->global.status, core::GlobalStatus::kSubmitted);
  EXPECT_EQ(mid->branches[1].op, "action");
  EXPECT_EQ(mid->branches[1].status, core::BranchStatus::kPrepared) << "held in memory";
  EXPECT_EQ(store_->Stats().write_ops - before, 1u) << "only the create so far";
  EXPECT_TRUE(Await(fut).ok());
  EXPECT_EQ(store_->Stats().write_ops - before, 2u) << "create + final update";
  auto done = Load("w2");
  ASSERT_TRUE(done);
  EXPECT_EQ(done->global.status, core::GlobalStatus::kSucceed);
  for (size_t i : {1u, 3u}) {
    EXPECT_EQ(done->branches[i].status, core::BranchStatus::kSucceed) << i;
    EXPECT_EQ(done->branches[i].attempts, 1) << i;
    EXPECT_GT(done->branches[i].finish_time_ms, 0) << i;
  }
}

// When the stored wake-up does not cover the next call (a 200 ms retry interval here: the create
// stores now + 200 ms, step 1's call writes the lease now + 3 s + margin, and step 1 takes 50 ms,
// so step 2's deadline lies beyond it), the lease must be written before that call, and step 1's
// success goes with it.
TEST_F(EngineTest, ShortLeaseWritesStepSuccessBeforeTheNextCall) {
  net_.delay_ms["http://p/a1"] = 50;
  net_.delay_ms["http://p/a2"] = 300;
  auto fut = SubmitUntilCalled(Saga("w1", {{"http://p/a1", "http://p/c1"}, {"http://p/a2", ""}}),
                               "http://p/a1");
  auto mid = Load("w1");
  ASSERT_TRUE(mid);
  EXPECT_EQ(mid->branches[1].status, core::BranchStatus::kSucceed);
  EXPECT_GE(mid->global.lease_until_ms, Now() + 3000 + kLeaseMarginMs - 200)
      << "the lease covers step 2's deadline plus the margin";
  EXPECT_GE(mid->global.next_cron_time_ms, mid->global.lease_until_ms)
      << "and the wake-up does not come before it";
  EXPECT_TRUE(Await(fut).ok());
}

// Concurrent steps: a fast step's success (whose reset wake-up, 200 ms away, is sooner than the
// slow step's deadline) must not shorten the stored lease of the call still in flight; otherwise
// another coordinator could claim the transaction and call that step again. (The lease is kept
// apart from the wake-up, lease_until: a claim waits for both.)
TEST_F(EngineTest, StepSuccessNeverShortensTheLeaseOfACallInFlight) {
  net_.delay_ms["http://p/a1"] = 30;
  net_.delay_ms["http://p/slow"] = 400;
  core::TransSnapshot saga = Saga("w6", {{"http://p/a1", ""}, {"http://p/slow", ""}});
  saga.global.custom_data = R"({"concurrent":true})";
  const int64_t t0 = Now();
  auto fut = SubmitUntilCalled(saga, "http://p/a1");  // the slow call is in flight
  ASSERT_EQ(net_.Count("http://p/slow"), 0u);
  auto mid = Load("w6");
  ASSERT_TRUE(mid);
  EXPECT_GE(mid->global.lease_until_ms, t0 + 3000 + kLeaseMarginMs)
      << "the stored lease covers the slow call's deadline plus the margin";
  EXPECT_TRUE(Await(fut).ok());

  // The same with an error answer, which is written at once (with its backed-off wake-up, 400 ms
  // away): the wake-up may come sooner, the stored lease stays.
  net_.answers["http://p/a1"] = {500, "boom"};
  saga.global.gid = "w7";
  const int64_t t1 = Now();
  ASSERT_TRUE(Run(engine_->Submit(Req(saga, false))).ok());
  rt_->Advance(150);
  auto err = Load("w7");
  ASSERT_TRUE(err);
  EXPECT_EQ(err->branches[1].attempts, 1) << "the error was written";
  EXPECT_GE(err->global.lease_until_ms, t1 + 3000 + kLeaseMarginMs);
}

// A held success is written with the failure that follows it: step 1 is stored as succeeded and is
// compensated.
TEST_F(EngineTest, HeldSuccessIsWrittenWithTheFollowingFailure) {
  net_.answers["http://p/a2"] = {409, R"({"dtm_result":"FAILURE"})"};
  Status s = Run(engine_->Submit(
      Req(Saga("w3", {{"http://p/a1", "http://p/c1"}, {"http://p/a2", "http://p/c2"}}), true)));
  EXPECT_EQ(s.code(), Code::kConflict);
  auto snap = Load("w3");
  ASSERT_TRUE(snap);
  EXPECT_EQ(snap->global.status, core::GlobalStatus::kFailed);
  EXPECT_EQ(snap->branches[1].status, core::BranchStatus::kSucceed) << "action 01";
  EXPECT_EQ(snap->branches[0].status, core::BranchStatus::kSucceed) << "compensate 01";
  EXPECT_EQ(snap->branches[3].status, core::BranchStatus::kFailed) << "action 02";
  EXPECT_EQ(net_.Count("http://p/c1"), 1u);
}

// Submit tries the insert first; a gid that is stored already goes through the stored-state rules.
TEST_F(EngineTest, SubmitOfAStoredGidFollowsTheStoredState) {
  // Stored as submitted by another coordinator (or a previous process), not due yet: it may hold a
  // lease with a call in flight, so a re-submit does not start a round (dtx-sim seed 92); the
  // transaction runs once it is due, from the stored steps.
  core::TransSnapshot snap = Saga("w4", {{"http://p/a1", ""}});
  snap.global.status = core::GlobalStatus::kSubmitted;
  snap.global.owner = "another-coordinator";
  snap.global.next_cron_time_ms = Now() + 60'000;
  snap.global.next_cron_interval_ms = 10'000;
  Store(snap);
  EXPECT_TRUE(Run(engine_->Submit(Req(Saga("w4", {{"http://p/other", ""}}), false))).ok());
  EXPECT_EQ(net_.Count("http://p/a1"), 0u) << "the other coordinator's lease is respected";
  EXPECT_EQ(Load("w4")->global.status, core::GlobalStatus::kSubmitted);
  engine_->Start();
  rt_->Advance(61'000);
  EXPECT_EQ(Load("w4")->global.status, core::GlobalStatus::kSucceed);
  EXPECT_EQ(Load("w4")->global.owner, engine_->options().owner);
  EXPECT_EQ(net_.Count("http://p/a1"), 1u) << "the stored steps run, not the re-submitted ones";
  EXPECT_EQ(net_.Count("http://p/other"), 0u);
  // Its own transaction waiting for a retry: a re-submit resumes it at once (§5 #15).
  core::TransSnapshot own = Saga("w6", {{"http://p/a6", ""}});
  own.global.status = core::GlobalStatus::kSubmitted;
  own.global.owner = engine_->options().owner;
  own.global.next_cron_time_ms = Now() + 60'000;
  own.global.next_cron_interval_ms = 10'000;
  Store(own);
  EXPECT_TRUE(Run(engine_->Submit(Req(Saga("w6", {{"http://p/other", ""}}), true))).ok());
  EXPECT_EQ(Load("w6")->global.status, core::GlobalStatus::kSucceed);
  EXPECT_EQ(net_.Count("http://p/a6"), 1u);
  // A gid of another type.
  core::TransSnapshot tcc;
  tcc.global.gid = "w5";
  tcc.global.trans_type = core::TransType::kTcc;
  ASSERT_TRUE(Run(engine_->Prepare(tcc)).ok());
  Status wrong = Run(engine_->Submit(Req(Saga("w5", {{"http://p/a1", ""}}), false)));
  EXPECT_EQ(wrong.code(), Code::kConflict);
  EXPECT_EQ(wrong.reason(), refusal::kWrongType) << wrong.ToString();
  ASSERT_NE(wrong.info(), nullptr);
  EXPECT_EQ(wrong.info()->Fact("stored_type"), "tcc");
}

TEST(BranchCallTest, BuildsDtmCallShape) {
  core::GlobalTrans g;
  g.gid = "g 1";
  g.trans_type = core::TransType::kSaga;
  g.options.branch_headers = {{"x-token", "t"}};
  core::BranchRow row;
  row.url = "http://h:1/api/TransOut?a=1";
  row.branch_id = "01";
  row.op = "action";
  row.bin_data = "{}";
  BranchCallSpec spec = BuildBranchCall(g, row, 1234);
  EXPECT_EQ(spec.method, "POST");
  EXPECT_EQ(spec.url,
            "http://h:1/api/TransOut?a=1&branch_id=01&gid=g%201&op=action&trans_type=saga");
  EXPECT_EQ(spec.timeout_ms, 1234);
  ASSERT_EQ(spec.headers.size(), 2u);
  EXPECT_EQ(spec.headers[0].first, "Content-type");
  row.bin_data.clear();
  EXPECT_EQ(BuildBranchCall(g, row, 1).method, "GET");
}

}  // namespace
}  // namespace dtx::engine
