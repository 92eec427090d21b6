// Business keys in the admin views (issue 13 item 1, docs/operations.md "Business keys"): a saga
// waiting behind another on a key shows its keys and the gid it waits for in
// GET /api/dtx/admin/transactions/{gid}, in the list (waiting=1 finds it) and in `dtx tx show` /
// `dtx tx list --waiting`; once the holder finishes it holds them; once it finishes they read as
// released. Then the cost of the waiting filter with 200 sagas queued on one key (printed). The
// real `dtx server` on SQLite, and on PostgreSQL with DTX_E2E_STORE=postgres.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

constexpr const char* kToken = "oncall-token-0123456789";

// Whether the table `out` has a row for `gid` (a line that starts with it).
bool HasRow(const std::string& out, const std::string& gid) {
  return out.starts_with(gid + " ") || out.find("\n" + gid + " ") != std::string::npos;
}

json::value Parse(const std::string& body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  return ec ? json::value() : v;
}

class AdminKeysE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("admin-keys");
    store_ = E2EStore(dir_);
    if (store_.empty()) GTEST_SKIP() << "DTX_E2E_STORE=postgres needs DTX_TEST_PG_URL";
    server_ = std::make_unique<ServerProcess>(
        store_, std::vector<std::string>{"--retry-interval", "0.3", "--cron-interval", "0.1",
                                         "--request-timeout", "3", "--log-level", "warn",
                                         "--admin-token", std::string("oncall=") + kToken});
    ASSERT_TRUE(server_->Start());
  }
  HttpResult Submit(const std::string& gid, const std::string& path,
                    const std::vector<std::string>& keys) {
    json::array k;
    for (const auto& key : keys) k.emplace_back(key);
    return HttpFetch("POST", server_->Api("submit"),
                     SagaBody(gid, {{busi_.Url(path), busi_.Url("/undo")}}, {"{}"},
                              json::object{{"business_keys", std::move(k)}}));
  }
  json::value Admin(const std::string& path) {
    HttpResult r = HttpFetchWithHeaders("GET", server_->Base() + "/api/dtx/admin/" + path, "",
                                        {{"Authorization", std::string("Bearer ") + kToken}});
    EXPECT_EQ(r.status, 200) << path << ": " << r.body;
    return Parse(r.body);
  }
  const json::value& Keys(const json::value& detail) {
    return detail.at("transaction").at("business_keys");
  }
  std::vector<std::string> ListedGids(const json::value& page) {
    std::vector<std::string> out;
    for (const auto& t : page.at("transactions").as_array()) {
      out.emplace_back(t.at("gid").as_string());
    }
    return out;
  }
  CliResult Cli(const std::string& args) {
    return RunDtxCommand(args + " --server " + server_->Base() + " --token " + kToken);
  }

  std::string dir_;
  std::string store_;
  std::unique_ptr<ServerProcess> server_;
  Busi busi_;
};

TEST_F(AdminKeysE2E, WaitingSagaShowsItsKeysAndWhomItWaitsForThenHoldsThem) {
  busi_.SetDefault("/hold", BusiAnswer::Error());  // the holder keeps its key, retrying
  busi_.SetDefault("/wait", BusiAnswer::Error());
  ASSERT_EQ(Submit("pay-holder", "/hold", {"account:42"}).status, 200);
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/hold") >= 1; }, milliseconds(10000)));
  ASSERT_EQ(Submit("pay-waiter", "/wait", {"account:7", "account:42"}).status, 200);

  // The detail: its keys (sorted), not held, and the gid ahead of it on which key.
  json::value w = Admin("transactions/pay-waiter");
  EXPECT_EQ(w.at("transaction").at("status").as_string(), "submitted");
  EXPECT_EQ(Keys(w).at("keys"), (json::array{"account:42", "account:7"})) << w;
  EXPECT_FALSE(Keys(w).at("held").as_bool()) << w;
  EXPECT_EQ(Keys(w).at("waiting_for").as_string(), "pay-holder") << w;
  EXPECT_EQ(Keys(w).at("waiting_key").as_string(), "account:42") << w;
  EXPECT_EQ(busi_.CallCount("/wait"), 0u);
  json::value h = Admin("transactions/pay-holder");
  EXPECT_TRUE(Keys(h).at("held").as_bool()) << h;
  EXPECT_FALSE(Keys(h).as_object().contains("waiting_for"));
  // The admin detail and GET query show the same object (one encoder).
  json::value q = QueryTrans(*server_, "pay-waiter").raw;
  EXPECT_EQ(q.at("business_keys"), Keys(w)) << q;

  // The list: waiting=1 finds the waiter only; unfiltered rows carry the same object.
  json::value waiting = Admin("transactions?waiting=1&gid_prefix=pay-");
  EXPECT_EQ(ListedGids(waiting), std::vector<std::string>{"pay-waiter"}) << waiting;
  EXPECT_EQ(waiting.at("transactions").at(0).at("business_keys").at("waiting_for").as_string(),
            "pay-holder");
  json::value all = Admin("transactions?gid_prefix=pay-");
  EXPECT_EQ(ListedGids(all), (std::vector<std::string>{"pay-waiter", "pay-holder"}));
  EXPECT_TRUE(all.at("transactions").at(1).at("business_keys").at("held").as_bool());

  // The command line.
  CliResult show = Cli("tx show pay-waiter");
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(
      show.out.find("keys:       account:42, account:7  waiting for pay-holder on account:42"),
      std::string::npos)
      << show.out;
  CliResult js = Cli("tx show pay-waiter --json");
  EXPECT_EQ(js.exit_code, 0) << js.err;
  EXPECT_EQ(Keys(Parse(js.out)).at("waiting_for").as_string(), "pay-holder") << js.out;
  CliResult list = Cli("tx list --waiting --gid-prefix pay-");
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(HasRow(list.out, "pay-waiter")) << list.out;
  EXPECT_NE(list.out.find("waiting for pay-holder on account:42"), std::string::npos) << list.out;
  EXPECT_FALSE(HasRow(list.out, "pay-holder")) << list.out;  // not a waiter
  CliResult listed = Cli("tx list --gid-prefix pay-");
  EXPECT_TRUE(HasRow(listed.out, "pay-holder")) << listed.out;
  EXPECT_NE(listed.out.find("wait "), std::string::npos) << listed.out;  // the waiter's flag

  // The holder's participant is fixed: it succeeds and releases the key; the waiter takes both
  // keys and runs (its own participant still fails, so it stays unfinished, holding them).
  busi_.SetDefault("/hold", BusiAnswer::Success());
  EXPECT_EQ(WaitStatus(*server_, "pay-holder", {"succeed"}).status, "succeed");
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/wait") >= 1; }, milliseconds(10000)));
  w = Admin("transactions/pay-waiter");
  EXPECT_TRUE(Keys(w).at("held").as_bool()) << w;
  EXPECT_FALSE(Keys(w).as_object().contains("waiting_for")) << w;
  h = Admin("transactions/pay-holder");
  EXPECT_TRUE(Keys(h).at("released").as_bool()) << h;
  EXPECT_EQ(ListedGids(Admin("transactions?waiting=1&gid_prefix=pay-")),
            std::vector<std::string>{});
  show = Cli("tx show pay-waiter");
  EXPECT_NE(show.out.find("keys:       account:42, account:7  held"), std::string::npos)
      << show.out;

  busi_.SetDefault("/wait", BusiAnswer::Success());
  EXPECT_EQ(WaitStatus(*server_, "pay-waiter", {"succeed"}).status, "succeed");
  show = Cli("tx show pay-waiter");
  EXPECT_NE(show.out.find("keys:       account:42, account:7  released (final)"), std::string::npos)
      << show.out;
}

// What the waiting filter costs: 200 sagas queued behind one holder on one key. A list with
// waiting=1 reads every queued one's key state (one store read each, at most 200 per call).
TEST_F(AdminKeysE2E, WaitingFilterOverTwoHundredQueuedSagas) {
  busi_.SetDefault("/hold", BusiAnswer::Error());
  ASSERT_EQ(Submit("hot-holder", "/hold", {"sku:1"}).status, 200);
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/hold") >= 1; }, milliseconds(10000)));
  constexpr int kQueued = 200;
  for (int i = 0; i < kQueued; ++i) {
    ASSERT_EQ(Submit("hot-" + std::to_string(i), "/wait", {"sku:1"}).status, 200);
  }
  std::vector<double> ms;
  json::value page;
  for (int round = 0; round < 5; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    page = Admin("transactions?waiting=1&limit=500");
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  // 201 keyed rows, a budget of 200 key reads: 200 waiters listed (the holder is the 201st row)
  // and a position to go on from.
  EXPECT_EQ(page.at("key_reads").as_int64(), 200) << page.at("scanned");
  EXPECT_EQ(page.at("transactions").as_array().size(), 200u);
  EXPECT_NE(page.at("next_position").as_int64(), 0);
  json::value rest = Admin("transactions?waiting=1&limit=500&position=" +
                           std::to_string(page.at("next_position").as_int64()));
  EXPECT_EQ(rest.at("transactions").as_array().size(), 0u);  // only the holder was left
  EXPECT_EQ(rest.at("key_reads").as_int64(), 1);
  std::sort(ms.begin(), ms.end());
  std::printf("waiting=1 over %d queued sagas (%s): median %.1f ms, min %.1f, max %.1f (5 calls)\n",
              kQueued, E2EOnPostgres() ? "postgres" : "sqlite", ms[2], ms[0], ms[4]);
  EXPECT_EQ(busi_.CallCount("/wait"), 0u);
}

}  // namespace
}  // namespace dtx::testing
