// Several coordinators on one PostgreSQL (issue 5): three `dtx server` processes share a store, a
// few thousand sagas are submitted round-robin with slow participants, one coordinator is killed
// with SIGKILL mid-run and another is stopped and restarted. Every acknowledged saga must reach its
// right final state, and no branch may be executed by two coordinators at once while a lease is
// valid: the participant records every call and the test asserts that no two calls of one (gid,
// branch, op) overlap in time.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

using std::chrono::milliseconds;

TEST(MultiCoordinatorTest, KillOneRestartAnotherNothingLostNoOverlap) {
  const std::string store = FreshPostgresStore();
  if (store.empty()) GTEST_SKIP() << "DTX_TEST_PG_URL is not set (scripts/test.sh sets it)";
  const std::vector<std::string> args = {"--retry-interval",  "0.5", "--cron-interval", "0.1",
                                         "--request-timeout", "2",   "--log-level",     "warn"};
  Busi busi;
  // Slow participants (well inside the 2 s request timeout), and a share of rollbacks.
  busi.SetDefault("/slow/a1", BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 300});
  busi.SetDefault("/slow/a2", BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 200});
  busi.SetDefault("/rb/a2", BusiAnswer::Failure());
  busi.SetDefault("/rb/c1", BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 200});

  std::vector<std::unique_ptr<ServerProcess>> servers;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(std::make_unique<ServerProcess>(store, args));
    ASSERT_TRUE(servers.back()->Start()) << "coordinator " << i;
  }
  std::vector<uint16_t> ports;
  for (auto& s : servers) ports.push_back(s->port());

  struct Sub {
    std::string gid;
    bool rollback;
    bool acked;
  };
  std::mutex mu;
  std::vector<Sub> subs;
  std::atomic<int> acked{0};
  constexpr int kThreads = 12;
  constexpr int kPerThread = 170;  // ~2000 sagas
  auto worker = [&](int t) {
    std::mt19937 rng(static_cast<unsigned>(t) * 7919u);
    for (int i = 0; i < kPerThread; ++i) {
      const bool rollback = rng() % 5 == 0;
      const std::string prefix = rollback ? "/rb" : "/slow";
      const std::string gid = "mc-" + std::to_string(t) + "-" + std::to_string(i);
      const uint16_t port = ports[static_cast<size_t>(t + i) % ports.size()];
      HttpResult r =
          HttpFetch("POST", "http://127.0.0.1:" + std::to_string(port) + "/api/dtmsvr/submit",
                    SagaBody(gid,
                             {{busi.Url(prefix + "/a1"), busi.Url(prefix + "/c1")},
                              {busi.Url(prefix + "/a2"), busi.Url(prefix + "/c2")}},
                             {"{\"n\":1}", "{\"n\":2}"}),
                    milliseconds(5000));
      const bool ok = r.status == 200;
      acked += ok;
      std::lock_guard<std::mutex> lock(mu);
      subs.push_back({gid, rollback, ok});
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  ASSERT_TRUE(WaitFor([&] { return acked.load() >= 600; }, std::chrono::seconds(120)));
  servers[0]->Kill();  // SIGKILL mid-run
  ASSERT_TRUE(WaitFor([&] { return acked.load() >= 1000; }, std::chrono::seconds(120)));
  EXPECT_EQ(servers[1]->Terminate(), 0);  // stopped cleanly...
  servers[1] = std::make_unique<ServerProcess>(store, args);
  ASSERT_TRUE(servers[1]->Start());  // ...and restarted (on a new port; clients keep the old one)
  for (auto& th : threads) th.join();

  // Every acknowledged saga reaches its right final state (checked on the coordinator that ran
  // throughout); an unacknowledged one may exist, but then it must not be stuck either.
  const ServerProcess& survivor = *servers[2];
  int acknowledged = 0, succeeded = 0, rolled_back = 0, unacked_found = 0;
  for (const auto& s : subs) {
    if (!s.acked && !QueryTrans(survivor, s.gid).found) continue;
    acknowledged += s.acked;
    unacked_found += !s.acked;
    TransView v = WaitStatus(survivor, s.gid, {"succeed", "failed"}, milliseconds(90000));
    ASSERT_TRUE(v.found) << s.gid << " lost";
    if (s.rollback) {
      ASSERT_EQ(v.status, "failed") << s.gid;
      EXPECT_EQ(v.branch_status,
                (std::vector<std::string>{"succeed", "succeed", "succeed", "failed"}))
          << s.gid;
      ++rolled_back;
    } else {
      ASSERT_EQ(v.status, "succeed") << s.gid;
      ++succeeded;
    }
  }
  // No two calls of one (gid, branch_id, op) overlapped in time.
  std::map<std::string, std::vector<BusiCall>> by_op;
  for (auto& c : busi.Calls()) {
    by_op[c.query["gid"] + "/" + c.query["branch_id"] + "/" + c.query["op"]].push_back(c);
  }
  int repeated = 0, overlaps = 0;
  for (auto& [key, calls] : by_op) {
    std::sort(calls.begin(), calls.end(),
              [](const BusiCall& a, const BusiCall& b) { return a.start < b.start; });
    for (size_t k = 1; k < calls.size(); ++k) {
      ++repeated;
      if (calls[k].start < calls[k - 1].end) {
        ++overlaps;
        ADD_FAILURE() << key << ": call " << k << " started while call " << k - 1 << " was running";
      }
    }
  }
  std::printf(
      "multi-coordinator: %zu submitted, %d acknowledged, %d unacknowledged found, %d "
      "succeeded, %d rolled back; %d repeated branch calls (after the kill/restart), %d "
      "overlapping\n",
      subs.size(), acknowledged, unacked_found, succeeded, rolled_back, repeated, overlaps);
  EXPECT_GE(acknowledged, 1000);
  for (auto& s : servers) {
    if (s->running()) {
      EXPECT_EQ(s->Terminate(), 0);
    }
  }
}

}  // namespace
}  // namespace dtx::testing
