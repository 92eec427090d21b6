// The admin service's business-key views (ops/admin.h): Show and List read the keys' state
// (Engine::KeyStateOf) of an unfinished transaction that lists keys; List's `waiting` filter keeps
// the ones that do not hold them; AdminOptions::max_key_reads bounds the key reads of one List
// call (a short page with a position to continue from). On the memory store and an engine that
// is never started (no round runs: the key rows stay as written).
#include "ops/admin.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/business_keys.h"
#include "engine/engine_test_util.h"
#include "store/store.h"

// GCC 12: a false -Wmismatched-new-delete for Asio's awaitable frames (see engine_internal.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dtx::ops {
namespace {

using engine::testing::FakeRuntime;

class AdminKeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::NewMemoryStore();
    rt_ = std::make_unique<FakeRuntime>();
    engine_ = std::make_unique<engine::Engine>(engine::EngineOptions{}, *store_, rt_->pool(),
                                               rt_->clock(), nullptr, engine::CallerFactory{},
                                               &rt_->timers());
  }
  void TearDown() override {
    engine_->Shutdown();
    engine_.reset();
    rt_.reset();
  }
  AdminService Service(int max_key_reads) {
    AdminOptions o;
    o.max_key_reads = max_key_reads;
    return AdminService(*engine_, *store_, rt_->clock(), nullptr, o);
  }
  // A submitted saga, stored with its key rows queued (as the API stores one).
  void Create(const std::string& gid, std::vector<std::string> keys) {
    core::TransSnapshot s;
    s.global.gid = gid;
    s.global.trans_type = core::TransType::kSaga;
    s.global.status = core::GlobalStatus::kSubmitted;
    s.global.create_time_ms = s.global.update_time_ms = rt_->clock().NowMs();
    s.global.next_cron_time_ms = rt_->clock().NowMs() + 3'600'000;
    if (!keys.empty()) {
      core::KeySpec spec;
      spec.keys = keys;
      Result<std::string> cd = core::WithKeySpec("", spec);
      ASSERT_TRUE(cd.ok());
      s.global.custom_data = *cd;
      s.business_keys = keys;
    }
    Status st = Status::Internal("no answer");
    store_->Create(s, [&](Status r) { st = r; });
    ASSERT_TRUE(st.ok()) << st.ToString();
    rt_->clock().Advance(1);
  }
  core::KeyState Acquire(const std::string& gid) {
    core::KeyState out;
    store_->AcquireKeys(gid, true, 0, [&](Result<core::KeyState> r) {
      ASSERT_TRUE(r.ok());
      out = *r;
    });
    return out;
  }
  AdminPage List(AdminService& svc, AdminListQuery q) {
    auto r = rt_->Run(svc.List(std::move(q)));
    EXPECT_TRUE(r && r->ok());
    return r && r->ok() ? std::move(**r) : AdminPage{};
  }
  static std::vector<std::string> Gids(const AdminPage& p) {
    std::vector<std::string> out;
    for (const AdminRow& r : p.rows) out.push_back(r.trans.gid);
    return out;
  }

  std::unique_ptr<store::Store> store_;
  std::unique_ptr<FakeRuntime> rt_;
  std::unique_ptr<engine::Engine> engine_;
};

TEST_F(AdminKeysTest, ShowReadsHeldOrTheGidWaitedFor) {
  Create("holder", {"account:42"});
  ASSERT_TRUE(Acquire("holder").held);
  Create("waiter", {"account:42", "account:7"});
  Create("plain", {});
  AdminService svc = Service(kMaxKeyReadsPerList);

  auto w = rt_->Run(svc.Show("waiter"));
  ASSERT_TRUE(w && w->ok() && w->value().has_value());
  const std::optional<core::KeyState>& keys = (*w)->value().row.keys;
  ASSERT_TRUE(keys.has_value());
  EXPECT_FALSE(keys->held);
  EXPECT_EQ(keys->waiting_for, "holder");
  EXPECT_EQ(keys->waiting_key, "account:42");

  auto h = rt_->Run(svc.Show("holder"));
  ASSERT_TRUE(h && h->ok() && h->value().has_value());
  ASSERT_TRUE((*h)->value().row.keys.has_value());
  EXPECT_TRUE((*h)->value().row.keys->held);

  auto p = rt_->Run(svc.Show("plain"));
  ASSERT_TRUE(p && p->ok() && p->value().has_value());
  EXPECT_FALSE((*p)->value().row.keys.has_value());  // no keys: no key read
}

TEST_F(AdminKeysTest, WaitingFilterKeepsOnlyTheOnesThatDoNotHoldTheirKeys) {
  Create("holder", {"k"});
  ASSERT_TRUE(Acquire("holder").held);
  Create("w1", {"k"});
  Create("plain", {});
  Create("w2", {"k", "other"});
  AdminService svc = Service(kMaxKeyReadsPerList);

  AdminListQuery q;
  q.waiting = true;
  AdminPage page = List(svc, q);
  EXPECT_EQ(Gids(page), (std::vector<std::string>{"w2", "w1"}));
  EXPECT_EQ(page.next_position, 0);
  EXPECT_EQ(page.key_reads, 3);  // w2, w1, holder; plain costs none
  ASSERT_EQ(page.rows.size(), 2u);
  EXPECT_EQ(page.rows[1].keys->waiting_for, "holder");

  // Unfiltered, every keyed row carries its state; the others none.
  page = List(svc, AdminListQuery{});
  ASSERT_EQ(Gids(page), (std::vector<std::string>{"w2", "plain", "w1", "holder"}));
  EXPECT_TRUE(page.rows[3].keys && page.rows[3].keys->held);
  EXPECT_FALSE(page.rows[1].keys.has_value());
  EXPECT_TRUE(page.rows[0].keys && !page.rows[0].keys->held);
}

TEST_F(AdminKeysTest, KeyReadsPerListAreBoundedAndThePageContinues) {
  Create("holder", {"k"});
  ASSERT_TRUE(Acquire("holder").held);
  Create("w1", {"k"});
  Create("w2", {"k"});
  Create("w3", {"k"});
  Create("plain", {});
  AdminService svc = Service(2);

  AdminListQuery q;
  q.waiting = true;
  AdminPage first = List(svc, q);
  EXPECT_EQ(first.key_reads, 2);
  EXPECT_EQ(Gids(first), (std::vector<std::string>{"w3", "w2"}));
  ASSERT_NE(first.next_position, 0);  // the budget ran out: more may follow

  q.position = first.next_position;
  AdminPage second = List(svc, q);
  EXPECT_EQ(second.key_reads, 2);  // w1 and the holder (held: not listed)
  EXPECT_EQ(Gids(second), (std::vector<std::string>{"w1"}));
  ASSERT_NE(second.next_position, 0);

  q.position = second.next_position;
  AdminPage third = List(svc, q);
  EXPECT_EQ(third.key_reads, 0);
  EXPECT_TRUE(third.rows.empty());
  EXPECT_EQ(third.next_position, 0);

  // A budget below 1 is taken as 1.
  AdminService one = Service(0);
  AdminListQuery waiting;
  waiting.waiting = true;
  AdminPage tiny = List(one, waiting);
  EXPECT_EQ(tiny.key_reads, 1);
  EXPECT_EQ(Gids(tiny), (std::vector<std::string>{"w3"}));
}

}  // namespace
}  // namespace dtx::ops
