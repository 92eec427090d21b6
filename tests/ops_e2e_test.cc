// End-to-end tests of issue 13's retention, call history and metrics against the real `dtx server`
// and a scriptable participant: finished transactions and old audit records deleted by
// --retain-finished / --retain-audit (unfinished ones untouched, the audit log kept while it is
// younger), every call of a branch in GET /api/dtx/admin/transactions/{gid} and `dtx tx show`,
// and the metrics after real traffic. On SQLite, and on PostgreSQL with DTX_E2E_STORE=postgres.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

constexpr const char* kToken = "oncall-token-0123456789";

json::value Parse(const std::string& body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  return ec ? json::value() : v;
}

HttpResult Admin(const ServerProcess& s, const std::string& method, const std::string& path,
                 const std::string& body = "") {
  return HttpFetchWithHeaders(method, s.Base() + "/api/dtx/admin/" + path, body,
                              {{"Authorization", std::string("Bearer ") + kToken}});
}

// Runs the dtx binary with `args`; its stdout.
std::string RunDtx(const std::string& args) {
  const std::string out = TempDir("ops-cli") + "/out";
  const std::string cmd = DtxBinary() + " " + args + " >" + out + " 2>&1 </dev/null";
  const int status = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd;
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The value of one series in the Prometheus text, or -1.
double Series(const std::string& text, const std::string& series) {
  const std::string line = "\n" + series + " ";
  const size_t at = text.find(line);
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + line.size()));
}

class OpsE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("ops");
    store_ = E2EStore(dir_);
    if (store_.empty()) GTEST_SKIP() << "DTX_E2E_STORE=postgres needs DTX_TEST_PG_URL";
  }
  std::string dir_;
  std::string store_;
  Busi busi_;
};

// Every call of a failing branch is kept with its HTTP status, latency and error; the count of all
// stays on the branch; `dtx tx show` prints them.
TEST_F(OpsE2E, CallHistoryShowsEveryAttempt) {
  ServerProcess server(
      store_, {"--retry-interval", "0.2", "--max-retry-interval", "0.2", "--cron-interval", "0.05",
               "--log-level", "warn", "--admin-token", std::string("oncall=") + kToken});
  ASSERT_TRUE(server.Start());
  busi_.SetDefault("/h/a1", BusiAnswer::Error());
  const std::string gid = "history-1";
  auto r = HttpFetch("POST", server.Api("submit"),
                     SagaBody(gid, {{busi_.Url("/h/a1"), busi_.Url("/h/c1")}}, {"{}"}));
  ASSERT_EQ(r.status, 200) << r.body;
  // More calls than the 20 kept.
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/h/a1") >= 23; }, milliseconds(20000)));
  busi_.SetDefault("/h/a1", BusiAnswer::Success());
  ASSERT_EQ(WaitStatus(server, gid, {"succeed"}, milliseconds(5000)).status, "succeed");

  auto shown = Admin(server, "GET", "transactions/" + gid);
  ASSERT_EQ(shown.status, 200) << shown.body;
  json::value v = Parse(shown.body);
  const json::array& branches = v.at("branches").as_array();
  const json::object* action = nullptr;
  for (const auto& b : branches) {
    if (b.at("op").as_string() == "action") action = &b.as_object();
  }
  ASSERT_NE(action, nullptr);
  const int64_t attempts = action->at("attempts").as_int64();
  EXPECT_GE(attempts, 24);
  const json::array& calls = action->at("calls").as_array();
  ASSERT_EQ(calls.size(), 20u) << "the newest 20 of " << attempts;
  EXPECT_EQ(calls.front().at("seq").as_int64(), attempts - 19);
  const json::object& last = calls.back().as_object();
  EXPECT_EQ(last.at("seq").as_int64(), attempts);
  EXPECT_EQ(last.at("result").as_string(), "SUCCESS");
  EXPECT_EQ(last.at("http_status").as_int64(), 200);
  const json::object& failed = calls.front().as_object();
  EXPECT_EQ(failed.at("result").as_string(), "ERROR");
  EXPECT_EQ(failed.at("http_status").as_int64(), 500);
  EXPECT_FALSE(failed.at("error").as_string().empty());
  EXPECT_LE(failed.at("error").as_string().size(), 256u);
  EXPECT_GE(failed.at("latency_ms").as_int64(), 0);
  EXPECT_LT(failed.at("latency_ms").as_int64(), 3000);
  for (size_t i = 1; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].at("seq").as_int64(), calls[i - 1].at("seq").as_int64() + 1);
    EXPECT_GE(calls[i].at("time_ms").as_int64(), calls[i - 1].at("time_ms").as_int64());
  }

  // The command line prints the calls as a table.
  const std::string out =
      RunDtx("tx show " + gid + " --server " + server.Base() + " --token " + kToken);
  EXPECT_NE(out.find("CALL"), std::string::npos) << out;
  EXPECT_TRUE(
      std::regex_search(out, std::regex("action +" + std::to_string(attempts) + " .* 200 SUCCESS")))
      << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(" 500 ERROR .*HTTP 500"))) << out;
  EXPECT_EQ(server.Terminate(), 0);
}

// --retain-finished deletes finished transactions (and their branch rows) once older than the
// horizon, never an unfinished one; the audit log, younger than --retain-audit, stays.
TEST_F(OpsE2E, RetentionDeletesFinishedKeepsUnfinishedAndAudit) {
  ServerProcess server(
      store_, {"--retry-interval", "5", "--cron-interval", "0.1", "--log-level", "warn",
               "--admin-token", std::string("oncall=") + kToken, "--retain-finished", "1500ms",
               "--retain-audit", "1h", "--retention-interval", "200ms", "--retention-batch", "2"});
  ASSERT_TRUE(server.Start());
  busi_.SetDefault("/r/stuck", BusiAnswer::Error());
  std::vector<std::string> done;
  for (int i = 0; i < 5; ++i) {
    done.push_back("ret-done-" + std::to_string(i));
    auto r = HttpFetch("POST", server.Api("submit"),
                       SagaBody(done.back(), {{busi_.Url("/r/a"), busi_.Url("/r/c")}}, {"{}"}));
    ASSERT_EQ(r.status, 200) << r.body;
  }
  for (const auto& gid : done) {
    ASSERT_EQ(WaitStatus(server, gid, {"succeed"}, milliseconds(5000)).status, "succeed");
  }
  const std::string stuck = "ret-stuck";
  auto r = HttpFetch("POST", server.Api("submit"),
                     SagaBody(stuck, {{busi_.Url("/r/stuck"), busi_.Url("/r/c")}}, {"{}"}));
  ASSERT_EQ(r.status, 200) << r.body;
  // An operator action on a finished one: its audit record must outlive the transaction.
  auto resolved = Admin(server, "POST", "transactions/" + done[0] + "/resolve",
                        R"({"reason":"checked by hand"})");
  EXPECT_EQ(resolved.status, 409) << "a succeeded transaction cannot be resolved";
  auto acted = Admin(server, "POST", "transactions/" + stuck + "/retry", R"({"reason":"kick"})");
  ASSERT_EQ(acted.status, 200) << acted.body;

  // The newest transaction is always kept; submit one more after the others so that every
  // finished one above can go.
  ASSERT_EQ(HttpFetch("POST", server.Api("submit"),
                      SagaBody("ret-newest", {{busi_.Url("/r/a"), busi_.Url("/r/c")}}, {"{}"}))
                .status,
            200);
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& gid : done) {
          if (QueryTrans(server, gid).found) return false;
        }
        return true;
      },
      milliseconds(15000)))
      << "finished transactions deleted after 1.5 s";
  TransView s = QueryTrans(server, stuck);
  EXPECT_TRUE(s.found) << "an unfinished transaction is never deleted";
  EXPECT_EQ(s.status, "submitted");
  EXPECT_EQ(s.branch_status.size(), 2u);
  auto audit = Parse(Admin(server, "GET", "audit?gid=" + stuck).body);
  ASSERT_TRUE(audit.is_object());
  EXPECT_EQ(audit.at("audit").as_array().size(), 1u) << "the audit log is kept (1 h)";
  const std::string metrics = HttpFetch("GET", server.Base() + "/api/metrics").body;
  EXPECT_GE(Series(metrics, "dtx_retention_deleted_rows_total{table=\"transactions\"}"), 5)
      << metrics;
  EXPECT_GE(Series(metrics, "dtx_retention_deleted_rows_total{table=\"branches\"}"), 10);
  EXPECT_EQ(server.Terminate(), 0);
}

TEST_F(OpsE2E, BadRetentionFlagsRefuseToStart) {
  for (std::vector<std::string> bad : {std::vector<std::string>{"--retain-finished", "10x"},
                                       {"--retain-audit", "-1d"},
                                       {"--retention-batch", "0"},
                                       {"--retention-batch", "5001"}}) {
    ServerProcess s(store_, bad);
    EXPECT_FALSE(s.Start(std::chrono::seconds(5))) << bad[0] << " " << bad[1];
  }
}

// After real traffic: the store's batch histograms, the per-host call latency, the gauges.
TEST_F(OpsE2E, MetricsAfterRealTraffic) {
  ServerProcess server(store_,
                       {"--retry-interval", "5", "--cron-interval", "0.1", "--log-level", "warn"});
  ASSERT_TRUE(server.Start());
  busi_.SetDefault("/m/slow", BusiAnswer::Error());
  for (int i = 0; i < 4; ++i) {
    const std::string gid = "metrics-" + std::to_string(i);
    auto r = HttpFetch("POST", server.Api("submit"),
                       SagaBody(gid, {{busi_.Url("/m/a"), busi_.Url("/m/c")}}, {"{}"}));
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_EQ(WaitStatus(server, gid, {"succeed"}, milliseconds(5000)).status, "succeed");
  }
  auto r =
      HttpFetch("POST", server.Api("submit"),
                SagaBody("metrics-stuck", {{busi_.Url("/m/slow"), busi_.Url("/m/c")}}, {"{}"}));
  ASSERT_EQ(r.status, 200);
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/m/slow") >= 1; }, milliseconds(5000)));
  const std::string text = HttpFetch("GET", server.Base() + "/api/metrics").body;
  const std::string host = busi_.Url("").substr(7);  // host:port
  const std::string h = "{host=\"" + host.substr(0, host.find('/')) + "\"";
  EXPECT_GE(Series(text, "dtx_branch_call_duration_seconds_count" + h + "}"), 5) << text;
  EXPECT_GE(Series(text, "dtx_branch_call_duration_seconds_bucket" + h + ",le=\"+Inf\"}"), 5);
  EXPECT_GE(Series(text, "dtx_store_batch_ops_count"), 5) << "every commit observed";
  EXPECT_GE(Series(text, "dtx_store_batch_ops_bucket{le=\"+Inf\"}"), 5);
  EXPECT_GT(Series(text, "dtx_store_commit_seconds_sum"), 0);
  EXPECT_GE(Series(text, "dtx_store_commit_seconds_count"), 5);
  EXPECT_GE(Series(text, "dtx_due_backlog"), 0) << "counted at the scrape";
  EXPECT_GE(Series(text, "dtx_branch_calls_in_flight"), 0);
  EXPECT_GE(Series(text, "dtx_active_transactions"), 0);
  EXPECT_EQ(server.Terminate(), 0);
}

// The gauges and counters follow real work, not only exist: a call held by a slow participant is
// in flight; sagas whose retry is due while recovery sleeps (--cron-interval 30) are the due
// backlog; operator actions count by kind; notification attempts by outcome.
TEST_F(OpsE2E, GaugesAndCountersFollowRealWork) {
  ServerProcess server(store_, {"--retry-interval", "0.2", "--cron-interval", "30", "--log-level",
                                "warn", "--admin-token", std::string("oncall=") + kToken});
  ASSERT_TRUE(server.Start());
  auto metrics = [&] { return HttpFetch("GET", server.Base() + "/api/metrics").body; };
  BusiAnswer slow = BusiAnswer::Success();
  slow.delay_ms = 1500;
  busi_.SetDefault("/g/slow", slow);
  ASSERT_EQ(HttpFetch("POST", server.Api("submit"),
                      SagaBody("gauge-slow", {{busi_.Url("/g/slow"), ""}}, {"{}"}))
                .status,
            200);
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/g/slow") == 1; }, milliseconds(5000)));
  std::string text = metrics();
  EXPECT_EQ(Series(text, "dtx_branch_calls_in_flight"), 1) << text;
  EXPECT_EQ(Series(text, "dtx_active_transactions"), 1) << text;
  EXPECT_EQ(Series(text, "dtx_due_backlog"), 0) << "the slow one holds its lease";
  ASSERT_EQ(WaitStatus(server, "gauge-slow", {"succeed"}, milliseconds(5000)).status, "succeed");

  busi_.SetDefault("/g/err", BusiAnswer::Error());
  for (int i = 0; i < 3; ++i) {
    const std::string gid = "gauge-due-" + std::to_string(i);
    ASSERT_EQ(
        HttpFetch("POST", server.Api("submit"), SagaBody(gid, {{busi_.Url("/g/err"), ""}}, {"{}"}))
            .status,
        200);
  }
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/g/err") == 3; }, milliseconds(5000)));
  // Each is due again 0.2 s after its failed call; the gauge is counted at most once a second.
  std::this_thread::sleep_for(milliseconds(1100));
  text = metrics();
  EXPECT_EQ(Series(text, "dtx_due_backlog"), 3) << text;
  EXPECT_EQ(Series(text, "dtx_branch_calls_in_flight"), 0) << text;
  EXPECT_EQ(Series(text, "dtx_active_transactions"), 0) << text;

  const std::string reason = R"({"reason":"gauge test"})";
  ASSERT_EQ(Admin(server, "POST", "transactions/gauge-due-0/stop", reason).status, 200);
  ASSERT_EQ(Admin(server, "POST", "transactions/gauge-due-1/stop", reason).status, 200);
  ASSERT_EQ(Admin(server, "POST", "transactions/gauge-due-2/resolve", reason).status, 200);
  text = metrics();
  EXPECT_EQ(Series(text, "dtx_operator_actions_total{action=\"stop\"}"), 2) << text;
  EXPECT_EQ(Series(text, "dtx_operator_actions_total{action=\"resolve\"}"), 1) << text;
  EXPECT_LE(Series(text, "dtx_operator_actions_total{action=\"retry\"}"), 0) << text;

  // Notifications: one delivered at once; one whose first attempt fails with a second one
  // scheduled (recovery, asleep here, would make it); one whose only attempt fails.
  auto notify = [&](const std::string& id, const std::string& path, json::array schedule) {
    json::object body{
        {"id", id}, {"url", busi_.Url(path)}, {"payload", "{}"}, {"schedule", schedule}};
    return HttpFetch("POST", server.Base() + "/api/dtx/notify", json::serialize(body)).status;
  };
  ASSERT_EQ(notify("gauge-n-ok", "/g/hook", {0, 1}), 200);
  ASSERT_EQ(notify("gauge-n-retry", "/g/err", {0, 1}), 200);
  ASSERT_EQ(notify("gauge-n-once", "/g/err", {0}), 200);
  ASSERT_TRUE(WaitFor(
      [&] {
        text = metrics();
        return Series(text, "dtx_notification_attempts_total{outcome=\"delivered\"}") >= 1 &&
               Series(text, "dtx_notification_attempts_total{outcome=\"failed\"}") >= 1 &&
               Series(text, "dtx_notification_attempts_total{outcome=\"exhausted\"}") >= 1;
      },
      milliseconds(10000)))
      << text;
  EXPECT_EQ(Series(text, "dtx_notification_attempts_total{outcome=\"delivered\"}"), 1) << text;
  // Every attempt without success counts as failed, the last of an ended schedule too.
  EXPECT_EQ(Series(text, "dtx_notification_attempts_total{outcome=\"failed\"}"), 2) << text;
  EXPECT_EQ(Series(text, "dtx_notification_attempts_total{outcome=\"exhausted\"}"), 1) << text;
  EXPECT_EQ(server.Terminate(), 0);
}

// The admin routes' metrics labels are a fixed set: unknown actions on unknown gids (400/404),
// made-up admin paths and console files add no series; a known action keeps its own label.
TEST_F(OpsE2E, AdminMetricsLabelsAreAFixedSet) {
  ServerProcess server(store_,
                       {"--log-level", "warn", "--admin-token", std::string("oncall=") + kToken});
  ASSERT_TRUE(server.Start());
  auto series = [&](std::string* text) {
    *text = HttpFetch("GET", server.Base() + "/api/metrics").body;
    std::istringstream in(*text);
    size_t n = 0;
    for (std::string line; std::getline(in, line);) n += line.starts_with("dtm_server_");
    return n;
  };
  auto scan = [&](const std::string& round) {
    for (int i = 0; i < 40; ++i) {
      const std::string n = round + std::to_string(i);
      EXPECT_EQ(Admin(server, "POST", "transactions/g/act" + n, R"({"reason":"x"})").status, 400);
      EXPECT_EQ(Admin(server, "GET", "made-up-" + n).status, 404);
      EXPECT_EQ(HttpFetch("GET", server.Base() + "/admin/file-" + n + ".js").status, 404);
    }
    EXPECT_EQ(Admin(server, "POST", "transactions/no-such-gid/retry", R"({"reason":"x"})").status,
              404);
  };
  std::string text;
  (void)series(&text);
  scan("a");
  const size_t after_first = series(&text);
  scan("b");
  EXPECT_EQ(series(&text), after_first) << text;
  for (const char* raw : {"acta", "actb", "made-up", "file-"}) {
    EXPECT_EQ(text.find(raw), std::string::npos) << raw << " is request text, not a label";
  }
  EXPECT_NE(text.find("api=\"admin_action\",status=\"fail\"} 80"), std::string::npos) << text;
  EXPECT_NE(text.find("api=\"admin_retry\",status=\"fail\"} 2"), std::string::npos) << text;
  EXPECT_EQ(server.Terminate(), 0);
}

// The admin list's created_after / created_before filters (epoch ms), and a bad value.
TEST_F(OpsE2E, AdminListFiltersByCreationTime) {
  ServerProcess server(store_, {"--retry-interval", "5", "--log-level", "warn", "--admin-token",
                                std::string("oncall=") + kToken});
  ASSERT_TRUE(server.Start());
  auto now_ms = [] {
    return std::chrono::duration_cast<milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  auto submit = [&](const std::string& gid) {
    ASSERT_EQ(HttpFetch("POST", server.Api("submit"),
                        SagaBody(gid, {{busi_.Url("/t/a"), busi_.Url("/t/c")}}, {"{}"}))
                  .status,
              200);
  };
  submit("created-early");
  std::this_thread::sleep_for(milliseconds(50));
  const std::string between = std::to_string(now_ms());
  std::this_thread::sleep_for(milliseconds(50));
  submit("created-late");
  auto gids = [&](const std::string& filter) {
    std::vector<std::string> out;
    auto r = Admin(server, "GET", "transactions?gid_prefix=created-&" + filter);
    EXPECT_EQ(r.status, 200) << r.body;
    json::value v = Parse(r.body);
    if (!v.is_object()) return out;
    for (const auto& t : v.at("transactions").as_array()) {
      out.emplace_back(t.at("gid").as_string());
    }
    return out;
  };
  EXPECT_EQ(gids("created_after=" + between), std::vector<std::string>{"created-late"});
  EXPECT_EQ(gids("created_before=" + between), std::vector<std::string>{"created-early"});
  EXPECT_EQ(gids("created_after=" + between + "&created_before=" + between),
            std::vector<std::string>{});
  EXPECT_EQ(gids("created_after=0").size(), 2u);
  auto bad = Admin(server, "GET", "transactions?created_after=yesterday");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find("created_after"), std::string::npos) << bad.body;
  EXPECT_EQ(server.Terminate(), 0);
}

}  // namespace
}  // namespace dtx::testing
