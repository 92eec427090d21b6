// Engine tests on the in-memory store with a fake participant transport: rounds, durability order,
// recovery of stored unfinished work, limits and forceStop racing a round.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <future>
#include <map>
#include <mutex>
#include <thread>

namespace dtx::engine {
namespace {

namespace asio = boost::asio;

// Answers by URL path suffix; records calls. Thread-safe (one instance shared by all shards).
struct FakeNet {
  std::mutex mu;
  std::map<std::string, BranchAnswer> answers;  // by URL prefix (without query)
  std::map<std::string, int> delay_ms;
  std::vector<std::string> calls;  // "url"
  BranchAnswer For(const std::string& url) {
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back(url);
    std::string base = url.substr(0, url.find('?'));
    auto it = answers.find(base);
    return it != answers.end() ? it->second : BranchAnswer{200, R"({"dtm_result":"SUCCESS"})"};
  }
  int DelayFor(const std::string& url) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = delay_ms.find(url.substr(0, url.find('?')));
    return it != delay_ms.end() ? it->second : 0;
  }
  size_t Count(const std::string& base) {
    std::lock_guard<std::mutex> lock(mu);
    size_t n = 0;
    for (auto& c : calls) n += c.rfind(base + "?", 0) == 0;
    return n;
  }
};

class FakeCaller final : public BranchCaller {
 public:
  FakeCaller(asio::any_io_executor ex, FakeNet& net) : ex_(ex), net_(net) {}
  asio::awaitable<BranchAnswer> Call(BranchCallSpec spec) override {
    if (int d = net_.DelayFor(spec.url); d > 0) {
      asio::steady_timer t(ex_, std::chrono::milliseconds(d));
      co_await t.async_wait(asio::use_awaitable);
    }
    co_return net_.For(spec.url);
  }

 private:
  asio::any_io_executor ex_;
  FakeNet& net_;
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
  void Make(EngineOptions opts) {
    engine_.reset();
    if (pool_) {
      pool_->Stop();
      pool_->Join();
    }
    pool_ = std::make_unique<http::IoPool>(2);
    opts.settings.retry_interval_ms = 200;
    opts.cron_interval_ms = 50;
    engine_ = std::make_unique<Engine>(
        opts, *store_, *pool_, SystemClock::Instance(), nullptr,
        [this](asio::any_io_executor ex) { return std::make_unique<FakeCaller>(ex, net_); });
    pool_->Start();
  }
  void TearDown() override {
    engine_->Stop();
    pool_->Stop();
    pool_->Join();
    engine_.reset();
  }
  template <class T>
  static asio::awaitable<void> Deliver(asio::awaitable<T> aw, std::shared_ptr<std::promise<T>> p) {
    p->set_value(co_await std::move(aw));
  }
  // Runs an engine awaitable on the pool and waits (bounded) for its result.
  template <class T>
  T Run(asio::awaitable<T> aw) {
    auto p = std::make_shared<std::promise<T>>();
    auto fut = p->get_future();
    asio::co_spawn(pool_->Get(0), Deliver(std::move(aw), p), asio::detached);
    EXPECT_EQ(fut.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    return fut.get();
  }
  std::optional<core::TransSnapshot> Load(const std::string& gid) {
    auto r = Run(engine_->Query(gid));
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : std::nullopt;
  }
  core::GlobalStatus WaitFinal(const std::string& gid) {
    for (int i = 0; i < 500; ++i) {
      auto s = Load(gid);
      if (s && core::IsFinal(s->global.status)) return s->global.status;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return Load(gid) ? Load(gid)->global.status : core::GlobalStatus::kPrepared;
  }

  FakeNet net_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<http::IoPool> pool_;
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
  EXPECT_EQ(again.message(), "current status 'succeed', cannot sumbmit. FAILURE");
}

TEST_F(EngineTest, RecoveryResumesStoredUnfinishedWork) {
  // A saga left "submitted" by a previous process, already due.
  core::TransSnapshot snap = Saga("g4", {{"http://p/a1", "http://p/c1"}});
  snap.global.status = core::GlobalStatus::kSubmitted;
  snap.global.create_time_ms = SystemClock::Instance().NowMs() - 1000;
  snap.global.next_cron_time_ms = SystemClock::Instance().NowMs() - 1;
  snap.global.next_cron_interval_ms = 200;
  std::promise<Status> p;
  store_->Create(snap, [&](Status s) { p.set_value(s); });
  ASSERT_TRUE(p.get_future().get().ok());
  engine_->Start();
  EXPECT_EQ(WaitFinal("g4"), core::GlobalStatus::kSucceed);
  EXPECT_EQ(net_.Count("http://p/a1"), 1u);
}

TEST_F(EngineTest, ErrorIsRetriedByRecoveryWithBackoff) {
  engine_->Start();
  net_.answers["http://p/flaky"] = {500, "boom"};
  ASSERT_TRUE(Run(engine_->Submit(Req(Saga("g5", {{"http://p/flaky", ""}}), false))).ok());
  ASSERT_TRUE([&] {
    for (int i = 0; i < 200; ++i) {
      if (net_.Count("http://p/flaky") >= 2) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }());
  auto snap = Load("g5");
  EXPECT_EQ(snap->global.status, core::GlobalStatus::kSubmitted);
  EXPECT_GE(snap->global.next_cron_interval_ms, 400) << "the interval doubled after an error";
  EXPECT_GE(snap->branches[1].attempts, 1);
  EXPECT_NE(snap->branches[1].last_error.find("boom"), std::string::npos);
  {
    std::lock_guard<std::mutex> lock(net_.mu);
    net_.answers.erase("http://p/flaky");
  }
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

TEST_F(EngineTest, ForceStopDuringARoundWins) {
  net_.delay_ms["http://p/slow"] = 300;
  ASSERT_TRUE(Run(engine_->Submit(Req(
                      Saga("g6", {{"http://p/slow", "http://p/c"}, {"http://p/a2", ""}}), false)))
                  .ok());
  Status st = Run(engine_->ForceStop("g6"));
  EXPECT_TRUE(st.ok()) << st.ToString();
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  auto snap = Load("g6");
  EXPECT_EQ(snap->global.status, core::GlobalStatus::kFailed);
  EXPECT_EQ(snap->global.rollback_reason, "force stopped by operator");
  EXPECT_EQ(net_.Count("http://p/a2"), 0u) << "the abandoned round must not go on";
  EXPECT_EQ(Run(engine_->ForceStop("g6")).code(), Code::kConflict);
  EXPECT_EQ(Run(engine_->ForceStop("nope")).code(), Code::kNotFound);
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
