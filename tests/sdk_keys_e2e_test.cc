// Business keys through the C++ SDK (include/dtx/business_keys.h) against the real `dtx server`:
// two TccGlobalTransactions on one key are serialized at the participant (the second's Try only
// after the first's Confirm), on_busy reject and the wait's end map to kConflict with their
// reasons, a prepare that waits longer than the client's 10 s request_timeout succeeds, xa/msg/saga
// send their keys, the limits are checked client-side exactly where the coordinator puts them, and
// a registerBranch of a tcc whose keyed prepare still waits is refused.
// SQLite, and PostgreSQL with DTX_E2E_STORE=postgres.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "dtx/business_keys.h"
#include "dtx/msg.h"
#include "dtx/saga.h"
#include "dtx/tcc.h"
#include "dtx/xa.h"
#include "tests/support/harness.h"
#include "tests/support/key_overlap.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

class SdkKeysE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("sdk-keys");
    std::string store = E2EStore(dir_);
    if (store.empty()) GTEST_SKIP() << "DTX_E2E_STORE=postgres needs DTX_TEST_PG_URL";
    server_ = std::make_unique<ServerProcess>(
        store, std::vector<std::string>{"--retry-interval", "0.3", "--cron-interval", "0.1",
                                        "--request-timeout", "3", "--log-level", "warn"});
    ASSERT_TRUE(server_->Start());
    busi_.SetDefault("/t/try", BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 100});
    busi_.SetDefault("/t/confirm", BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 100});
    busi_.SetDefault("/t/cancel", BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 0});
  }
  std::string ApiUrl() const { return server_->Base() + "/api/dtmsvr"; }
  // One tcc branch on the recording participant.
  static Status OneBranch(Tcc& tcc, const Busi& busi) {
    return tcc.CallBranch("{}", busi.Url("/t/try"), busi.Url("/t/confirm"), busi.Url("/t/cancel"))
        .status();
  }
  TccOptions Keyed(std::vector<std::string> keys, OnBusy on_busy = OnBusy::kWait) {
    TccOptions o;
    o.wait_result = true;
    o.business_keys = std::move(keys);
    o.on_busy = on_busy;
    return o;
  }
  // A held TCC: prepared with `keys`, its body blocks until `release` is set (at most 60 s).
  // `prepared` is set when the body runs, or when the scope failed before it.
  std::jthread HoldInTcc(const std::string& gid, std::vector<std::string> keys,
                         std::promise<void>& prepared, std::shared_future<void> release,
                         Status* out) {
    return std::jthread([this, gid, keys, &prepared, release, out] {
      Client client(ApiUrl());
      bool signalled = false;
      *out = TccGlobalTransaction(client, gid, Keyed(keys), [&](Tcc& tcc) {
        Status s = OneBranch(tcc, busi_);
        signalled = true;
        prepared.set_value();
        release.wait_for(seconds(60));
        return s;
      });
      if (!signalled) prepared.set_value();
    });
  }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  Busi busi_;
};

TEST_F(SdkKeysE2E, TwoTccsOnOneKeyAreSerializedFromTryToConfirm) {
  std::promise<void> first_in_body;
  std::promise<void> release_first;
  Status first;
  std::jthread holder =
      HoldInTcc("sdk-first", {"acct:1"}, first_in_body, release_first.get_future().share(), &first);
  first_in_body.get_future().wait();

  std::atomic<bool> second_in_body{false};
  Status second;
  std::jthread waiter([&] {
    Client client(ApiUrl());
    second = TccGlobalTransaction(client, "sdk-second", Keyed({"acct:1", "acct:2"}), [&](Tcc& t) {
      second_in_body = true;
      return OneBranch(t, busi_);
    });
  });
  // The second waits in its prepare, visibly, and its body has not run.
  ASSERT_TRUE(WaitFor([&] { return QueryTrans(*server_, "sdk-second").found; }, seconds(5)));
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_FALSE(second_in_body.load()) << "the body ran while the first holds the key";
  json::value q = QueryTrans(*server_, "sdk-second").raw;
  EXPECT_EQ(q.at("business_keys").at("waiting_for").as_string(), "sdk-first") << q;

  release_first.set_value();
  holder.join();
  waiter.join();
  ASSERT_TRUE(first.ok()) << first.ToString();
  ASSERT_TRUE(second.ok()) << second.ToString();
  EXPECT_EQ(QueryTrans(*server_, "sdk-second").status, "succeed");
  // At the participant: the first's try..confirm ended before the second's try started.
  EXPECT_EQ(ExpectNoOverlap(busi_, {{"sdk-first", {"acct:1"}}, {"sdk-second", {"acct:1"}}}), 1u);
  const auto spans = Spans(busi_);
  ASSERT_EQ(spans.at("sdk-first").calls, 2u);   // try, confirm
  ASSERT_EQ(spans.at("sdk-second").calls, 2u);  // try, confirm
  EXPECT_LE(spans.at("sdk-first").last, spans.at("sdk-second").first);
}

TEST_F(SdkKeysE2E, RejectAndWaitEndMapToConflictWithTheirReasons) {
  std::promise<void> in_body;
  std::promise<void> release;
  Status held;
  std::shared_future<void> released = release.get_future().share();
  std::jthread holder = HoldInTcc("sdk-holder", {"r"}, in_body, released, &held);
  in_body.get_future().wait();

  Client client(ApiUrl());
  bool body_ran = false;
  auto body = [&](Tcc&) {
    body_ran = true;
    return Status::Ok();
  };
  const auto t0 = Clock::now();
  Status rejected =
      TccGlobalTransaction(client, "sdk-rejected", Keyed({"r"}, OnBusy::kReject), body);
  EXPECT_LT(Clock::now() - t0, seconds(2)) << "reject answers at once";
  EXPECT_EQ(rejected.code(), Code::kConflict) << rejected.ToString();
  EXPECT_EQ(rejected.reason(), kReasonBusinessKeysBusy) << rejected.ToString();
  EXPECT_NE(rejected.message().find("business keys busy"), std::string::npos);
  EXPECT_NE(rejected.message().find("'r'"), std::string::npos) << rejected.message();
  EXPECT_NE(rejected.message().find("sdk-holder"), std::string::npos) << rejected.message();
  EXPECT_EQ(rejected.info()->Fact("keys"), "r");
  EXPECT_EQ(QueryTrans(*server_, "sdk-rejected").status, "failed");

  // timeout_to_fail 2 s: the prepare waits 2 s (not the 30 s cap), then 409.
  TccOptions short_wait = Keyed({"r"});
  short_wait.timeout_to_fail_s = 2;
  const auto t1 = Clock::now();
  Status timed_out = TccGlobalTransaction(client, "sdk-timed-out", short_wait, body);
  const auto waited = Clock::now() - t1;
  EXPECT_GE(waited, milliseconds(1900));
  EXPECT_LT(waited, seconds(8));
  EXPECT_EQ(timed_out.code(), Code::kConflict) << timed_out.ToString();
  EXPECT_EQ(timed_out.reason(), kReasonBusinessKeysTimeout) << timed_out.ToString();
  EXPECT_NE(timed_out.message().find("not acquired"), std::string::npos) << timed_out.message();
  EXPECT_FALSE(body_ran);
  EXPECT_EQ(QueryTrans(*server_, "sdk-timed-out").status, "failed");

  release.set_value();
  holder.join();
  EXPECT_TRUE(held.ok()) << held.ToString();
  // The key is free again: a plain prepare gets it at once.
  EXPECT_TRUE(TccGlobalTransaction(client, "sdk-after", Keyed({"r"}, OnBusy::kReject), [&](Tcc& t) {
                return OneBranch(t, busi_);
              }).ok());
}

TEST_F(SdkKeysE2E, APrepareWaitingLongerThanTheRequestTimeoutSucceeds) {
  std::promise<void> in_body;
  std::promise<void> release;
  Status held;
  std::jthread holder =
      HoldInTcc("sdk-long-holder", {"long"}, in_body, release.get_future().share(), &held);
  in_body.get_future().wait();
  const ClientOptions defaults;
  ASSERT_EQ(defaults.request_timeout, seconds(10));  // what a client gets without configuring
  std::jthread releaser([&] {
    std::this_thread::sleep_for(seconds(11));
    release.set_value();
  });
  Client client(ApiUrl(), defaults);
  const auto t0 = Clock::now();
  Status waited = TccGlobalTransaction(client, "sdk-long-waiter", Keyed({"long"}),
                                       [&](Tcc& t) { return OneBranch(t, busi_); });
  const auto took = Clock::now() - t0;
  EXPECT_TRUE(waited.ok()) << waited.ToString();
  EXPECT_GT(took, seconds(10)) << "the prepare was expected to wait for the holder";
  EXPECT_EQ(QueryTrans(*server_, "sdk-long-waiter").status, "succeed");
  releaser.join();
  holder.join();
  EXPECT_TRUE(held.ok()) << held.ToString();
}

TEST_F(SdkKeysE2E, XaMsgAndSagaSendTheirKeys) {
  Client client(ApiUrl());
  XaOptions xo;
  xo.business_keys = {"x:1"};
  xo.on_busy = OnBusy::kReject;
  std::string xa_custom;
  Status xa = XaGlobalTransaction(client, "sdk-xa", xo, [&](Xa&) {
    // Inside the body the prepare has answered: the keys are held.
    json::value q = QueryTrans(*server_, "sdk-xa").raw;
    EXPECT_TRUE(q.at("business_keys").at("held").as_bool()) << q;
    xa_custom = QueryTrans(*server_, "sdk-xa").raw.at("transaction").at("custom_data").as_string();
    return Status::Ok();
  });
  EXPECT_TRUE(xa.ok()) << xa.ToString();
  EXPECT_EQ(xa_custom, R"({"business_keys":["x:1"],"on_busy":"reject"})");

  busi_.SetDefault("/m/a", BusiAnswer::Success());
  Msg msg(client, "sdk-msg");
  msg.Add(busi_.Url("/m/a"), "{}").SetDelay(0).SetWaitResult(true).SetBusinessKeys({"m:2", "m:1"});
  ASSERT_TRUE(msg.Submit().ok());
  EXPECT_EQ(QueryTrans(*server_, "sdk-msg").raw.at("transaction").at("custom_data").as_string(),
            R"({"delay":0,"business_keys":["m:1","m:2"]})");

  // Two-phase: the keys go with the prepare and again with the submit (the same keys are
  // accepted; the submit's custom_data {"delay":1} keeps them).
  Msg two_phase(client, "sdk-msg-2p");
  two_phase.Add(busi_.Url("/m/a"), "{}").SetDelay(1).SetBusinessKeys({"m:3"});
  ASSERT_TRUE(two_phase.Prepare(busi_.Url("/m/query")).ok());
  EXPECT_EQ(QueryTrans(*server_, "sdk-msg-2p").raw.at("transaction").at("custom_data").as_string(),
            R"({"business_keys":["m:3"]})");
  Status submitted = two_phase.Submit();
  EXPECT_TRUE(submitted.ok()) << submitted.ToString();
  EXPECT_EQ(QueryTrans(*server_, "sdk-msg-2p").raw.at("transaction").at("custom_data").as_string(),
            R"({"delay":1,"business_keys":["m:3"]})");
  EXPECT_EQ(WaitStatus(*server_, "sdk-msg-2p", {"succeed"}).status, "succeed");

  busi_.SetDefault("/s/a", BusiAnswer::Success());
  Saga saga(client, "sdk-saga");
  saga.Add(busi_.Url("/s/a"), "", "{}")
      .AddBranchOrder(0, {})
      .SetWaitResult(true)
      .SetBusinessKeys({"s:1"});
  ASSERT_TRUE(saga.Submit().ok());
  EXPECT_EQ(QueryTrans(*server_, "sdk-saga").raw.at("transaction").at("custom_data").as_string(),
            R"({"concurrent":true,"orders":{"0":[]},"business_keys":["s:1"]})");
}

// Keys the SDK accepts are exactly those the coordinator accepts: 16 keys, 128 bytes, a
// custom_data of 1024 bytes pass; one more of each is refused before anything is sent, and the
// coordinator refuses the same body with 400.
TEST_F(SdkKeysE2E, LimitsAreCheckedClientSideAtTheCoordinatorsLimits) {
  Client client(ApiUrl());
  busi_.SetDefault("/s/a", BusiAnswer::Success());
  int n = 0;
  // What the SDK answers, and what the coordinator answers to the same body sent raw.
  auto both = [&](const std::vector<std::string>& keys) {
    const std::string gid = "lim-" + std::to_string(n++);
    Saga saga(client, gid);
    saga.Add(busi_.Url("/s/a"), "", "{}").SetBusinessKeys(keys);
    Status sdk = saga.Submit();
    const bool sent = QueryTrans(*server_, gid).found;
    Saga raw_saga(client, gid + "-raw");
    raw_saga.Add(busi_.Url("/s/a"), "", "{}").SetBusinessKeys(keys);
    HttpResult raw = HttpFetch("POST", server_->Api("submit"), raw_saga.BuildBody());
    return std::tuple{sdk, sent, raw.status};
  };
  auto key = [](char first, size_t bytes) {
    return std::string(1, first) + std::string(bytes - 1, 'k');
  };

  std::vector<std::string> sixteen;
  for (int i = 0; i < 16; ++i) sixteen.push_back("k" + std::to_string(i));
  auto [ok16, sent16, raw16] = both(sixteen);
  EXPECT_TRUE(ok16.ok()) << ok16.ToString();
  EXPECT_TRUE(sent16);
  EXPECT_EQ(raw16, 200);
  sixteen.push_back("k16");
  auto [bad17, sent17, raw17] = both(sixteen);
  EXPECT_EQ(bad17.code(), Code::kInvalidArgument);
  EXPECT_NE(bad17.message().find("17 keys, over the limit of 16"), std::string::npos)
      << bad17.message();
  EXPECT_FALSE(sent17);
  EXPECT_EQ(raw17, 400);

  auto [ok128, sent128, raw128] = both({key('a', 128)});
  EXPECT_TRUE(ok128.ok()) << ok128.ToString();
  EXPECT_EQ(raw128, 200);
  auto [bad129, sent129, raw129] = both({key('a', 129)});
  EXPECT_EQ(bad129.code(), Code::kInvalidArgument);
  EXPECT_NE(bad129.message().find("129 bytes, over the limit of 128"), std::string::npos);
  EXPECT_FALSE(sent129);
  EXPECT_EQ(raw129, 400);

  // {"business_keys":[7 keys of 128 bytes, one of M]} has 939 + M bytes.
  std::vector<std::string> big;
  for (char c = 'a'; c < 'h'; ++c) big.push_back(key(c, 128));
  big.push_back(key('z', 85));
  auto [ok1024, sent1024, raw1024] = both(big);
  EXPECT_TRUE(ok1024.ok()) << ok1024.ToString();
  EXPECT_EQ(raw1024, 200);
  big.back().push_back('k');
  auto [bad1025, sent1025, raw1025] = both(big);
  EXPECT_EQ(bad1025.code(), Code::kInvalidArgument);
  EXPECT_NE(bad1025.message().find("1025 bytes, over the coordinator's limit of 1024"),
            std::string::npos)
      << bad1025.message();
  EXPECT_FALSE(sent1025);
  EXPECT_EQ(raw1025, 400);

  // A control character, and TccOptions checked the same way.
  EXPECT_EQ(CheckBusinessKeys({"a\nb"}).code(), Code::kInvalidArgument);
  TccOptions too_many;
  too_many.business_keys = sixteen;
  Status tcc = TccGlobalTransaction(client, "lim-tcc", too_many, [](Tcc&) { return Status::Ok(); });
  EXPECT_EQ(tcc.code(), Code::kInvalidArgument);
  EXPECT_FALSE(QueryTrans(*server_, "lim-tcc").found);
}

// A client that registers a branch before its keyed prepare answered (one that did not wait for
// it) is refused while the prepare waits on the coordinator without the keys: 409 naming the key
// and the holder, and no row is stored. Once the prepare answered 200 the same registration is
// accepted.
TEST_F(SdkKeysE2E, RegisterBranchOfATccWaitingForItsKeysIsRefused) {
  std::promise<void> in_body;
  std::promise<void> release;
  Status held;
  std::jthread holder =
      HoldInTcc("sdk-reg-holder", {"reg"}, in_body, release.get_future().share(), &held);
  in_body.get_future().wait();

  std::atomic<int> prepare_status{0};
  std::jthread waiter([&] {
    json::object body{
        {"gid", "sdk-impatient"}, {"trans_type", "tcc"}, {"business_keys", json::array{"reg"}}};
    prepare_status =
        HttpFetch("POST", server_->Api("prepare"), json::serialize(body), seconds(45)).status;
  });
  ASSERT_TRUE(WaitFor([&] { return QueryTrans(*server_, "sdk-impatient").found; }, seconds(5)));
  const std::string reg = json::serialize(json::object{{"gid", "sdk-impatient"},
                                                       {"trans_type", "tcc"},
                                                       {"branch_id", "01"},
                                                       {"confirm", busi_.Url("/t/confirm")},
                                                       {"cancel", busi_.Url("/t/cancel")},
                                                       {"data", "{}"}});
  HttpResult refused = HttpFetch("POST", server_->Api("registerBranch"), reg);
  EXPECT_EQ(refused.status, 409) << refused.body;
  EXPECT_NE(refused.body.find("business key 'reg' is not held"), std::string::npos) << refused.body;
  EXPECT_NE(refused.body.find("sdk-reg-holder"), std::string::npos) << refused.body;
  EXPECT_TRUE(QueryTrans(*server_, "sdk-impatient").branch_ops.empty()) << "no row stored";
  EXPECT_EQ(prepare_status.load(), 0) << "the prepare still waits";

  release.set_value();
  holder.join();
  waiter.join();
  EXPECT_EQ(prepare_status.load(), 200);
  HttpResult accepted = HttpFetch("POST", server_->Api("registerBranch"), reg);
  EXPECT_EQ(accepted.status, 200) << accepted.body;
  EXPECT_EQ(HttpFetch("POST", server_->Api("abort"),
                      R"({"gid":"sdk-impatient","trans_type":"tcc","wait_result":true})")
                .status,
            200);
}

TEST(PrepareKeyWaitDeadline, CoversTheCoordinatorsWaitPlusSlack) {
  EXPECT_EQ(PrepareKeyWaitDeadline(0, seconds(10)), seconds(40));   // unset: the 30 s cap
  EXPECT_EQ(PrepareKeyWaitDeadline(35, seconds(10)), seconds(40));  // capped at 30 s
  EXPECT_EQ(PrepareKeyWaitDeadline(2, seconds(10)), seconds(12));   // a shorter timeout_to_fail
  EXPECT_EQ(PrepareKeyWaitDeadline(2, seconds(60)), seconds(60));   // never below request_timeout
}

}  // namespace
}  // namespace dtx::testing
