// Crash tests of transactional messages with real processes (issue 4, PROTOCOL.md §1.9, §4.5): the
// real `dtx server`, the eBay example's trade service (serving the check-back) and user service
// (the consumer, idempotent through message_applied), and producer processes
// (`msg-ebay-example trade`: prepare -> local commit -> submit, with hooks that pause or SIGKILL
// the process at after-prepare, before-commit and after-commit). The test SIGKILLs producers and
// the coordinator and then checks, from the databases themselves, that a message is delivered if
// and only if its local transaction committed, and applied exactly once.
//
//   (a) producer killed after its local commit, before submit -> the check-back finds the commit,
//       the message is delivered;
//   (b) producer killed before its commit (and one paused before its local transaction until the
//       check-back decided, then resumed) -> the check-back rolls the message back, nothing is
//       delivered, the late local transaction gets DUPLICATED;
//   (c) coordinator killed while a slow consumer handles the delivery -> delivered after restart,
//       applied once;
//   (d) a few hundred randomized runs, concurrent producers, random kill points, random business
//       failures, lost consumer answers and coordinator restarts: every committed local
//       transaction's message delivered, none of a rolled-back one, each applied once.
// DTX_MSG_CRASH_RUNS and DTX_MSG_CRASH_JOBS override the size of (d) (default 400 runs, 8 at once);
// DTX_MSG_EBAY_BIN another msg-ebay-example binary.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The example binary under test; DTX_MSG_EBAY_BIN overrides the one of this build tree.
std::string ExampleBin() {
  const char* env = std::getenv("DTX_MSG_EBAY_BIN");
  return env != nullptr && *env != '\0' ? env : MSG_EBAY_BIN;
}
constexpr const char* kReadyPrefix = "msg-ebay-example ready: ";
constexpr const char* kPausedPrefix = "msg-ebay-example paused: ";

// ---------------------------------------------------------------------------------------------------
// A child process of the example binary: stdin and stdout on pipes, stderr appended to a log file.

class Proc {
 public:
  Proc() = default;
  Proc(const Proc&) = delete;
  Proc& operator=(const Proc&) = delete;
  ~Proc() {
    Kill();
    if (in_ >= 0) close(in_);
    if (out_ >= 0) close(out_);
  }

  bool Start(const std::vector<std::string>& args, const std::string& log_path) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0) return false;
    if (pipe2(out, O_CLOEXEC) != 0) return false;
    int log = ::open(log_path.c_str(), O_CREAT | O_APPEND | O_WRONLY | O_CLOEXEC, 0644);
    if (log < 0) return false;
    std::vector<std::string> argv_s = {ExampleBin()};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      dup2(in[0], STDIN_FILENO);
      dup2(out[1], STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(log);
    in_ = in[1];
    out_ = out[0];
    return true;
  }

  // The next line on stdout; nullopt on EOF or timeout.
  std::optional<std::string> ReadLine(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (size_t nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= 0ms) return std::nullopt;
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
      char buf[512];
      ssize_t got = read(out_, buf, sizeof buf);
      if (got <= 0) return std::nullopt;
      buffer_.append(buf, static_cast<size_t>(got));
    }
  }
  // Reads lines until one starts with `prefix`; returns the rest of it.
  std::optional<std::string> WaitFor(const std::string& prefix, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      auto line =
          ReadLine(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
      if (!line) return std::nullopt;
      if (line->rfind(prefix, 0) == 0) return line->substr(prefix.size());
      output_ += *line + "\n";
    }
    return std::nullopt;
  }
  void Resume() { (void)!write(in_, "\n", 1); }
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
    pid_ = -1;
  }
  // Waits for the exit (SIGKILL after `timeout`); returns the wait status.
  int Wait(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (pid_ > 0) {
      pid_t r = waitpid(pid_, &status_, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        break;
      }
      if (Clock::now() > deadline) {
        Kill();
        break;
      }
      std::this_thread::sleep_for(2ms);
    }
    return status_;
  }
  // Everything printed on stdout that was not consumed as a matched line.
  std::string Drain() {
    while (auto line = ReadLine(200ms)) output_ += *line + "\n";
    return output_;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int in_ = -1;
  int out_ = -1;
  int status_ = 0;
  std::string buffer_;
  std::string output_;
};

uint16_t PortOf(const std::string& ready_rest) {
  return static_cast<uint16_t>(std::stoi(ready_rest.substr(ready_rest.rfind(':') + 1)));
}

// ---------------------------------------------------------------------------------------------------
// Reading the services' SQLite databases directly (WAL: readers never block the writers).

class Reader {
 public:
  explicit Reader(const std::string& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_busy_timeout(db_, 10'000);
  }
  ~Reader() { sqlite3_close(db_); }
  std::vector<std::vector<std::string>> Query(const std::string& sql,
                                              const std::vector<std::string>& params = {}) {
    std::vector<std::vector<std::string>> rows;
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << sqlite3_errmsg(db_);
    if (rc != SQLITE_OK) return rows;
    for (size_t i = 0; i < params.size(); ++i) {
      sqlite3_bind_text(st, static_cast<int>(i + 1), params[i].c_str(), -1, SQLITE_TRANSIENT);
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(st, c));
        row.push_back(t ? t : "");
      }
      rows.push_back(std::move(row));
    }
    EXPECT_EQ(rc, SQLITE_DONE) << sql << ": " << sqlite3_errmsg(db_);
    sqlite3_finalize(st);
    return rows;
  }
  int64_t Int(const std::string& sql, const std::vector<std::string>& params = {}) {
    auto rows = Query(sql, params);
    return rows.empty() || rows[0].empty() || rows[0][0].empty() ? 0 : std::stoll(rows[0][0]);
  }

 private:
  sqlite3* db_ = nullptr;
};

// ---------------------------------------------------------------------------------------------------
// The cluster: coordinator, trade service (check-back), user service (consumer).

class Cluster {
 public:
  explicit Cluster(const std::string& name) : dir_(TempDir(name)) {}

  bool Start(const std::vector<std::string>& user_args = {}) {
    dtx_ = std::make_unique<ServerProcess>(
        dir_ + "/dtx.db",
        std::vector<std::string>{"--timeout-to-fail", "1", "--retry-interval", "0.2",
                                 "--cron-interval", "0.2", "--log-level", "warn"});
    if (!dtx_->Start()) return false;
    std::vector<std::string> user = {"serve", "--service", "user", "--db", "sqlite:" + user_db()};
    user.insert(user.end(), user_args.begin(), user_args.end());
    if (!user_.Start(user, dir_ + "/user.log")) return false;
    auto ready = user_.WaitFor(kReadyPrefix, 15s);
    if (!ready) return false;
    user_url_ = "http://127.0.0.1:" + std::to_string(PortOf(*ready));
    if (!trade_.Start({"serve", "--service", "trade", "--db", "sqlite:" + trade_db(), "--dtx",
                       dtx_->Api(""), "--user-url", user_url_},
                      dir_ + "/trade.log")) {
      return false;
    }
    ready = trade_.WaitFor(kReadyPrefix, 15s);
    if (!ready) return false;
    trade_url_ = "http://127.0.0.1:" + std::to_string(PortOf(*ready));
    return true;
  }

  // The producer's command line for one trade.
  std::vector<std::string> TradeArgs(const std::string& api, const std::string& gid,
                                     const std::string& xid, int seller, int buyer,
                                     int amount) const {
    return {"trade",
            "--dtx",
            api,
            "--db",
            "sqlite:" + trade_db(),
            "--query-prepared",
            trade_url_ + "/trade/queryPrepared",
            "--user-url",
            user_url_,
            "--gid",
            gid,
            "--xid",
            xid,
            "--seller",
            std::to_string(seller),
            "--buyer",
            std::to_string(buyer),
            "--amount",
            std::to_string(amount)};
  }
  std::string Api() {
    std::lock_guard lock(mu_);
    return dtx_->Api("");
  }
  void KillCoordinator() {
    std::lock_guard lock(mu_);
    dtx_->Kill();
  }
  bool RestartCoordinator() {
    std::lock_guard lock(mu_);
    return dtx_->Start();
  }
  ServerProcess& dtx() { return *dtx_; }

  std::string trade_db() const { return dir_ + "/trade.db"; }
  std::string user_db() const { return dir_ + "/user.db"; }
  const std::string& dir() const { return dir_; }

  // Ground truth, from the databases.
  std::string BarrierReason(const std::string& gid) {
    Reader r(trade_db());
    auto rows = r.Query(
        "select reason from dtm_barrier where gid = ? and branch_id = '00' and op = 'msg' and "
        "barrier_id = '01'",
        {gid});
    return rows.empty() ? "" : rows[0][0];
  }
  bool TradeRow(const std::string& xid) {
    Reader r(trade_db());
    return r.Int("select count(*) from \"transaction\" where xid = ?", {xid}) == 1;
  }
  bool Applied(const std::string& gid) {
    Reader r(user_db());
    return r.Int("select count(*) from message_applied where msg_id = ?", {gid + "/01"}) == 1;
  }
  int64_t Deliveries(const std::string& gid) {
    Reader r(user_db());
    return r.Int("select deliveries from delivery_log where msg_id = ?", {gid + "/01"});
  }
  std::map<int64_t, std::pair<int64_t, int64_t>> Amounts() {
    Reader r(user_db());
    std::map<int64_t, std::pair<int64_t, int64_t>> out;
    for (auto& row : r.Query("select id, amt_sold, amt_bought from \"user\"")) {
      out[std::stoll(row[0])] = {std::stoll(row[1]), std::stoll(row[2])};
    }
    return out;
  }
  // "SUCCESS"/"FAILURE"/other counts of the check-backs the trade service answered.
  std::map<std::string, int> CheckBacks() {
    std::ifstream in(dir_ + "/trade.log");
    std::map<std::string, int> out;
    std::string line;
    std::regex re(R"(trade: check-back gid=\S+ -> (\d+))");
    std::smatch m;
    while (std::getline(in, line)) {
      if (!std::regex_search(line, m, re)) continue;
      const std::string code = m[1];
      ++out[code == "200" ? "SUCCESS" : code == "409" ? "FAILURE" : "other"];
    }
    return out;
  }

 private:
  std::string dir_;
  std::mutex mu_;
  std::unique_ptr<ServerProcess> dtx_;
  Proc user_;
  Proc trade_;
  std::string user_url_;
  std::string trade_url_;
};

std::string StatusOf(ServerProcess& dtx, const std::string& gid) {
  TransView v = QueryTrans(dtx, gid);
  return v.found ? v.status : "absent";
}

// ---------------------------------------------------------------------------------------------------

TEST(MsgCrash, ProducerKilledAfterCommitIsDeliveredByTheCheckBack) {
  Cluster c("msgcrash-a");
  ASSERT_TRUE(c.Start());
  const auto before = c.Amounts();
  Proc producer;
  auto args = c.TradeArgs(c.Api(), "crash-a", "A1", 1, 2, 17);
  args.insert(args.end(), {"--pause-at", "after-commit"});
  ASSERT_TRUE(producer.Start(args, c.dir() + "/producer.log"));
  ASSERT_EQ(producer.WaitFor(kPausedPrefix, 20s), "after-commit");
  // Committed locally, not submitted: the coordinator holds a prepared message.
  EXPECT_TRUE(c.TradeRow("A1"));
  EXPECT_EQ(c.BarrierReason("crash-a"), "msg");
  EXPECT_EQ(StatusOf(c.dtx(), "crash-a"), "prepared");
  producer.Kill();
  EXPECT_TRUE(WIFSIGNALED(producer.Wait(1s)));

  TransView v = WaitStatus(c.dtx(), "crash-a", {"succeed", "failed"}, 20s);
  EXPECT_EQ(v.status, "succeed") << "the check-back must find the commit and deliver";
  EXPECT_TRUE(c.Applied("crash-a"));
  auto after = c.Amounts();
  EXPECT_EQ(after[1].first - before.at(1).first, 17);
  EXPECT_EQ(after[2].second - before.at(2).second, 17);
  EXPECT_GE(c.CheckBacks()["SUCCESS"], 1);
}

TEST(MsgCrash, ProducerKilledBeforeCommitIsRolledBackByTheCheckBack) {
  Cluster c("msgcrash-b");
  ASSERT_TRUE(c.Start());
  const auto before = c.Amounts();

  // Killed with its local transaction open (business done, COMMIT not sent).
  Proc producer;
  auto args = c.TradeArgs(c.Api(), "crash-b", "B1", 1, 2, 23);
  args.insert(args.end(), {"--pause-at", "before-commit"});
  ASSERT_TRUE(producer.Start(args, c.dir() + "/producer.log"));
  ASSERT_EQ(producer.WaitFor(kPausedPrefix, 20s), "before-commit");
  EXPECT_FALSE(c.TradeRow("B1")) << "not committed yet: invisible to other connections";
  EXPECT_EQ(StatusOf(c.dtx(), "crash-b"), "prepared");
  producer.Kill();

  TransView v = WaitStatus(c.dtx(), "crash-b", {"succeed", "failed"}, 20s);
  EXPECT_EQ(v.status, "failed") << "the check-back must roll the message back";
  EXPECT_FALSE(c.TradeRow("B1"));
  EXPECT_EQ(c.BarrierReason("crash-b"), "rollback");
  EXPECT_FALSE(c.Applied("crash-b"));
  EXPECT_EQ(c.Deliveries("crash-b"), 0);

  // Paused after prepare, before its local transaction, until the check-back decided; then
  // resumed: its local transaction must not commit (DUPLICATED), and nothing is delivered.
  Proc late;
  args = c.TradeArgs(c.Api(), "crash-b2", "B2", 3, 4, 5);
  args.insert(args.end(), {"--pause-at", "after-prepare"});
  ASSERT_TRUE(late.Start(args, c.dir() + "/producer.log"));
  ASSERT_EQ(late.WaitFor(kPausedPrefix, 20s), "after-prepare");
  v = WaitStatus(c.dtx(), "crash-b2", {"succeed", "failed"}, 20s);
  EXPECT_EQ(v.status, "failed");
  late.Resume();
  const std::string out = late.Drain();
  const int status = late.Wait(20s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << out;
  EXPECT_NE(out.find("DUPLICATED"), std::string::npos) << out;
  EXPECT_FALSE(c.TradeRow("B2"));
  EXPECT_FALSE(c.Applied("crash-b2"));
  EXPECT_EQ(c.Amounts(), before);
  EXPECT_GE(c.CheckBacks()["FAILURE"], 2);
}

TEST(MsgCrash, CoordinatorKilledDuringDeliveryDeliversAfterRestart) {
  Cluster c("msgcrash-c");
  ASSERT_TRUE(c.Start({"--delay-ms", "1500"}));  // a slow consumer: answers 1.5 s after its commit
  const auto before = c.Amounts();
  Proc producer;
  ASSERT_TRUE(
      producer.Start(c.TradeArgs(c.Api(), "crash-c", "C1", 2, 3, 31), c.dir() + "/producer.log"));
  const int status = producer.Wait(20s);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << producer.Drain();
  // The delivery has started (the consumer logs it before its transaction): kill the coordinator.
  ASSERT_TRUE(WaitFor([&] { return c.Deliveries("crash-c") >= 1; }, 10s));
  c.KillCoordinator();
  std::this_thread::sleep_for(2s);  // the consumer commits and answers into the void
  EXPECT_TRUE(c.Applied("crash-c"));
  ASSERT_TRUE(c.RestartCoordinator());
  TransView v = WaitStatus(c.dtx(), "crash-c", {"succeed", "failed"}, 30s);
  EXPECT_EQ(v.status, "succeed");
  EXPECT_GE(c.Deliveries("crash-c"), 2) << "redelivered after the restart";
  auto after = c.Amounts();
  EXPECT_EQ(after[2].first - before.at(2).first, 31) << "applied exactly once";
  EXPECT_EQ(after[3].second - before.at(3).second, 31) << "applied exactly once";
  std::printf("coordinator restart: message delivered %lld times, applied once\n",
              static_cast<long long>(c.Deliveries("crash-c")));
}

// ---------------------------------------------------------------------------------------------------
// (d) randomized

enum class KillPoint {
  kNone,              // runs to the end
  kDieAfterPrepare,   // SIGKILLs itself before its local transaction
  kKillBeforeCommit,  // paused with the local transaction open; the test SIGKILLs it
  kDieAfterCommit,    // SIGKILLs itself between commit and submit
  kKillAfterCommit,   // paused after the commit; the test SIGKILLs it
  kKillAtRandomTime,  // the test SIGKILLs it 0-60 ms after its start, wherever it is
  // Not killed, but slower than timeout_to_fail (1 s): the check-back comes first.
  kSlowAfterPrepare,  // paused 1.3 s before its local transaction: rolled back, DUPLICATED
  kSlowBeforeCommit,  // paused 1.3 s with its transaction open: the check-back waits for it
};
constexpr int kKillKinds = 8;
const char* KillName(KillPoint k) {
  static const char* const kNames[] = {"none",
                                       "die-after-prepare",
                                       "kill-before-commit",
                                       "die-after-commit",
                                       "kill-after-commit",
                                       "kill-random-time",
                                       "slow-after-prepare",
                                       "slow-before-commit"};
  return kNames[static_cast<int>(k)];
}

struct ProducerRun {
  std::string gid;
  std::string xid;
  int seller = 0;
  int buyer = 0;
  int amount = 0;
  KillPoint kill = KillPoint::kNone;
  int exit_status = 0;
  std::string output;  // what a slow producer printed
};

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

TEST(MsgCrash, RandomizedKillsKeepMessagesExact) {
  const int runs = EnvInt("DTX_MSG_CRASH_RUNS", 400);
  const int jobs = std::max(1, EnvInt("DTX_MSG_CRASH_JOBS", 8));
  Cluster c("msgcrash-d");
  // Every fifth answer of the consumer is "lost" after its commit: duplicate deliveries.
  ASSERT_TRUE(c.Start({"--lose-answer-rate", "0.2", "--seed", "7"}));
  const auto before = c.Amounts();
  const auto start = Clock::now();

  std::mt19937 rng(20240611);
  std::vector<ProducerRun> plan(static_cast<size_t>(runs));
  for (int i = 0; i < runs; ++i) {
    ProducerRun& r = plan[static_cast<size_t>(i)];
    r.gid = "rnd-" + std::to_string(i);
    r.xid = "X" + std::to_string(i);
    r.seller = 1 + static_cast<int>(rng() % 4);
    // A quarter of the trades are invalid (seller == buyer): the local transaction fails.
    r.buyer = rng() % 4 == 0 ? r.seller : 1 + static_cast<int>((r.seller + rng() % 3) % 4);
    r.amount = 1 + static_cast<int>(rng() % 100);
    // The slow kinds hold things up (one holds SQLite's write lock for 1.3 s): 1 run in 40.
    do {
      r.kill = static_cast<KillPoint>(rng() % kKillKinds);
    } while ((r.kill == KillPoint::kSlowAfterPrepare || r.kill == KillPoint::kSlowBeforeCommit) &&
             rng() % 5 != 0);
  }

  std::atomic<int> next{0};
  std::atomic<bool> producers_done{false};
  // While the coordinator is down no new producer starts (those in flight see the crash).
  std::atomic<bool> coordinator_down{false};
  auto worker = [&](int w) {
    std::mt19937 local(static_cast<unsigned>(w) * 7919u + 1);
    for (int i = next++; i < runs; i = next++) {
      while (coordinator_down) std::this_thread::sleep_for(5ms);
      ProducerRun& r = plan[static_cast<size_t>(i)];
      auto args = c.TradeArgs(c.Api(), r.gid, r.xid, r.seller, r.buyer, r.amount);
      switch (r.kill) {
        case KillPoint::kDieAfterPrepare:
          args.insert(args.end(), {"--die-at", "after-prepare"});
          break;
        case KillPoint::kKillBeforeCommit:
          args.insert(args.end(), {"--pause-at", "before-commit"});
          break;
        case KillPoint::kDieAfterCommit:
          args.insert(args.end(), {"--die-at", "after-commit"});
          break;
        case KillPoint::kKillAfterCommit:
          args.insert(args.end(), {"--pause-at", "after-commit"});
          break;
        case KillPoint::kSlowAfterPrepare:
          args.insert(args.end(), {"--pause-at", "after-prepare"});
          break;
        case KillPoint::kSlowBeforeCommit:
          args.insert(args.end(), {"--pause-at", "before-commit"});
          break;
        default:
          break;
      }
      Proc p;
      ASSERT_TRUE(p.Start(args, c.dir() + "/producers.log"));
      if (r.kill == KillPoint::kKillAtRandomTime) {
        std::this_thread::sleep_for(std::chrono::milliseconds(local() % 60));
        p.Kill();
      } else if (r.kill == KillPoint::kKillBeforeCommit || r.kill == KillPoint::kKillAfterCommit) {
        // Invalid trades never reach before-commit, and any producer may fail early (the
        // coordinator is being restarted): then there is no pause line and it just exits.
        if (p.WaitFor(kPausedPrefix, 30s)) p.Kill();
      } else if (r.kill == KillPoint::kSlowAfterPrepare || r.kill == KillPoint::kSlowBeforeCommit) {
        if (p.WaitFor(kPausedPrefix, 30s)) {
          std::this_thread::sleep_for(1300ms);
          p.Resume();
        }
        r.output = p.Drain();
      }
      r.exit_status = p.Wait(60s);
    }
  };
  // Two coordinator crashes while producers run (after a third and two thirds of them started):
  // prepares and submits in flight fail, prepared messages wait for the check-back of the
  // restarted coordinator, deliveries in flight are redone.
  int restarts = 0;
  std::thread chaos([&] {
    for (int k = 1; k <= 2; ++k) {
      while (next.load() < runs * k / 3 && !producers_done) std::this_thread::sleep_for(5ms);
      if (producers_done) break;
      coordinator_down = true;
      c.KillCoordinator();
      std::this_thread::sleep_for(300ms);
      ASSERT_TRUE(c.RestartCoordinator());
      coordinator_down = false;
      ++restarts;
    }
  });
  std::vector<std::thread> threads;
  for (int w = 0; w < jobs; ++w) threads.emplace_back(worker, w);
  for (auto& t : threads) t.join();
  producers_done = true;
  chaos.join();
  const auto produced = Clock::now();

  // Wait until every message that exists is final (check-backs run 1 s after creation).
  std::map<std::string, std::string> status;
  const auto deadline = Clock::now() + 120s;
  for (const ProducerRun& r : plan) {
    for (;;) {
      HttpResult h = HttpFetch("GET", c.dtx().Api("query?gid=" + r.gid));
      if (h.status == 200) {
        TransView v = QueryTrans(c.dtx(), r.gid);
        const std::string s = v.found ? v.status : "absent";
        if (s == "succeed" || s == "failed" || s == "absent") {
          status[r.gid] = s;
          break;
        }
      }
      if (Clock::now() > deadline) {
        status[r.gid] = "stuck";
        break;
      }
      std::this_thread::sleep_for(50ms);
    }
  }

  // The checks, against the databases.
  std::map<std::string, int> by_outcome;
  std::map<std::string, std::map<std::string, int>> by_kill;
  std::map<int64_t, std::pair<int64_t, int64_t>> expected;
  int committed = 0;
  int64_t deliveries = 0;
  for (const ProducerRun& r : plan) {
    const std::string reason = c.BarrierReason(r.gid);
    const bool is_committed = reason == "msg";
    const bool row = c.TradeRow(r.xid);
    const bool applied = c.Applied(r.gid);
    const int64_t delivered = c.Deliveries(r.gid);
    const std::string& s = status[r.gid];
    EXPECT_EQ(is_committed, row) << r.gid << ": barrier row and business row commit together";
    if (is_committed) {
      ++committed;
      EXPECT_EQ(s, "succeed") << r.gid << " (" << KillName(r.kill)
                              << "): a committed local transaction's message must be delivered";
      EXPECT_TRUE(applied) << r.gid;
      EXPECT_GE(delivered, 1) << r.gid;
      expected[r.seller].first += r.amount;
      expected[r.buyer].second += r.amount;
    } else {
      EXPECT_TRUE(s == "failed" || s == "absent")
          << r.gid << " (" << KillName(r.kill) << "): status " << s
          << " although its local transaction did not commit";
      EXPECT_FALSE(applied) << r.gid << ": a rolled-back trade's message was applied";
      EXPECT_EQ(delivered, 0) << r.gid << ": a rolled-back trade's message was delivered";
    }
    deliveries += delivered;
    const std::string outcome = is_committed    ? "committed+delivered"
                                : s == "failed" ? "rolled back (msg failed)"
                                                : "never prepared";
    ++by_outcome[outcome];
    ++by_kill[KillName(r.kill)][is_committed ? "delivered" : "dropped"];
    if (std::getenv("DTX_MSG_CRASH_VERBOSE") != nullptr && !r.output.empty()) {
      std::printf("  %s %s seller %d buyer %d: %s -> %s", r.gid.c_str(), KillName(r.kill), r.seller,
                  r.buyer, s.c_str(), r.output.c_str());
    }
  }
  // Each message applied exactly once: the amounts are the sums over the committed trades.
  auto after = c.Amounts();
  for (int64_t user = 1; user <= 4; ++user) {
    EXPECT_EQ(after[user].first - before.at(user).first, expected[user].first) << "user " << user;
    EXPECT_EQ(after[user].second - before.at(user).second, expected[user].second)
        << "user " << user;
  }
  Reader user_db(c.user_db());
  EXPECT_EQ(user_db.Int("select count(*) from message_applied"), committed);
  Reader trade_db(c.trade_db());
  EXPECT_EQ(trade_db.Int("select count(*) from \"transaction\""), committed);

  auto check_backs = c.CheckBacks();
  std::printf(
      "\nmsg crash runs: %d producers (%d at once), %d coordinator restarts, %.1f s "
      "(+%.1f s until final)\n",
      runs, jobs, restarts, std::chrono::duration<double>(produced - start).count(),
      std::chrono::duration<double>(Clock::now() - produced).count());
  for (const auto& [outcome, n] : by_outcome) std::printf("  %-26s %d\n", outcome.c_str(), n);
  for (const auto& [kill, counts] : by_kill) {
    std::printf("  kill %-20s delivered %3d  dropped %3d\n", kill.c_str(),
                counts.count("delivered") ? counts.at("delivered") : 0,
                counts.count("dropped") ? counts.at("dropped") : 0);
  }
  std::printf("  deliveries %lld for %d messages (duplicates absorbed by message_applied: %lld)\n",
              static_cast<long long>(deliveries), committed,
              static_cast<long long>(deliveries - committed));
  std::printf("  check-backs answered: SUCCESS %d, FAILURE %d, other %d\n", check_backs["SUCCESS"],
              check_backs["FAILURE"], check_backs["other"]);
  EXPECT_GT(committed, runs / 5) << "the run should commit a fair share";
  EXPECT_GT(check_backs["SUCCESS"], 0);
  EXPECT_GT(check_backs["FAILURE"], 0);
}

}  // namespace
}  // namespace dtx::testing
