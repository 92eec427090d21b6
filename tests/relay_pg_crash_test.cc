// The outbox's database killed -9 under a running relay. The relay commits its marks without
// waiting for the WAL flush (synchronous_commit = off in the claim's transaction: docs/outbox.md
// "Marks and the WAL flush"), so a crash of PostgreSQL may lose the last marks: their rows must be
// pending again and published again, never lost, and a key's rows must still reach the broker in
// order (first deliveries). A private cluster (scripts/pg-cluster.sh) is SIGKILLed, every one of
// its processes, three times while a writer commits rows and two relays publish them to a private
// redis-server; then every committed row is in the stream, nothing else is, and nothing is left
// pending.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "brokers/broker_process.h"
#include "brokers/require_broker.h"
#include "tests/support/relay_checks.h"
#include "tests/support/relay_process.h"

namespace dtx {
namespace {

using namespace std::chrono_literals;

std::string Shell(const std::string& cmd) {
  FILE* f = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[256];
  while (f != nullptr && std::fgets(buf, sizeof buf, f) != nullptr) out += buf;
  if (f != nullptr) ::pclose(f);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// A private PostgreSQL: started, SIGKILLed (the postmaster and every child), started again on
// its port (crash recovery replays the flushed WAL).
class PgCluster {
 public:
  explicit PgCluster(std::string dir) : dir_(std::move(dir)) {}
  ~PgCluster() { Shell(std::string(DTX_SOURCE_DIR) + "/scripts/pg-cluster.sh stop " + dir_); }
  std::string Start() {
    url_ =
        Shell(std::string(DTX_SOURCE_DIR) + "/scripts/pg-cluster.sh start " + dir_ + " " + port_);
    const size_t colon = url_.rfind(':');
    if (colon != std::string::npos)
      port_ = url_.substr(colon + 1, url_.find('/', colon) - colon - 1);
    return url_;
  }
  void KillNine() {
    std::ifstream pidfile(dir_ + "/postmaster.pid");
    pid_t postmaster = 0;
    pidfile >> postmaster;
    ASSERT_GT(postmaster, 0);
    std::vector<pid_t> pids = {postmaster};
    std::istringstream children(Shell("pgrep -P " + std::to_string(postmaster)));
    for (pid_t p; children >> p;) pids.push_back(p);
    for (pid_t p : pids) ::kill(p, SIGKILL);
    for (pid_t p : pids) {  // gone (reaped by init) before the restart: bounded wait
      for (int i = 0; i < 200 && std::filesystem::exists("/proc/" + std::to_string(p)); ++i) {
        std::this_thread::sleep_for(10ms);
      }
    }
  }
  const std::string& url() const { return url_; }

 private:
  std::string dir_, url_, port_;
};

std::string Query(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  std::string v =
      PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
  PQclear(r);
  return v;
}

TEST(RelayPgCrashTest, DatabaseKilledNineLosesNoRowAndKeepsKeyOrder) {
  DTX_REQUIRE_BROKER("redis");
  const std::string dir = "/tmp/dtx-relay-pgcrash-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms::all);  // the postgres user enters
  brokers::testing::BrokerProcess redis("redis", dir + "/redis");
  ASSERT_TRUE(redis.Start());
  PgCluster pg(dir + "/pg");
  const std::string url = pg.Start();
  ASSERT_TRUE(url.starts_with("postgres://")) << url;

  std::vector<std::unique_ptr<RelayProcess>> relays;
  for (int i = 0; i < 2; ++i) {
    relays.push_back(std::make_unique<RelayProcess>(
        std::vector<std::string>{"--source", url, "--sink", redis.Url(), "--init", "--batch", "20",
                                 "--workers", "2", "--poll-interval", "0.1"},
        dir + "/relay" + std::to_string(i) + ".log"));
    relays.back()->Start();
  }
  for (int i = 0; i < 200 && RunDtx("status --source " + url).first != 0; ++i) {
    std::this_thread::sleep_for(100ms);  // until a relay's --init created the table
  }
  ASSERT_EQ(RunDtx("status --source " + url).first, 0);

  // The writer: 10-row transactions over 20 keys, payload "key:seq". A commit cut by the crash
  // has an unknown fate: its sequence numbers stay used (only increase matters), and the check
  // below takes the committed rows from the database.
  std::atomic<bool> writing{true};
  std::atomic<int> commits{0};
  std::thread writer([&] {
    std::map<int, int> seq;
    std::mt19937 rng(3);
    PGconn* c = nullptr;
    while (writing.load()) {
      if (c == nullptr || PQstatus(c) != CONNECTION_OK) {
        if (c != nullptr) PQfinish(c);
        c = PQconnectdb(url.c_str());
        if (PQstatus(c) != CONNECTION_OK) {
          std::this_thread::sleep_for(50ms);
          continue;
        }
      }
      std::string values;
      for (int r = 0; r < 10; ++r) {
        const int k = static_cast<int>(rng() % 20);
        const std::string key = "k" + std::to_string(k);
        values += std::string(values.empty() ? "" : ",") + "('orders','" + key + "','" + key + ":" +
                  std::to_string(++seq[k]) + "')";
      }
      PGresult* r =
          PQexec(c, ("insert into dtx_outbox (topic, msg_key, payload) values " + values).c_str());
      if (PQresultStatus(r) == PGRES_COMMAND_OK) ++commits;
      PQclear(r);
      std::this_thread::sleep_for(3ms);
    }
    PQfinish(c);
  });
  for (int crash = 0; crash < 3; ++crash) {
    std::this_thread::sleep_for(700ms);
    pg.KillNine();
    std::this_thread::sleep_for(100ms);
    ASSERT_EQ(pg.Start(), url);
  }
  std::this_thread::sleep_for(500ms);
  writing = false;
  writer.join();

  PGconn* db = PQconnectdb(url.c_str());
  ASSERT_EQ(PQstatus(db), CONNECTION_OK);
  for (int i = 0; i < 600 && Query(db, "select count(*) from dtx_outbox where state = 0") != "0";
       ++i) {
    std::this_thread::sleep_for(100ms);
  }
  for (auto& r : relays) EXPECT_EQ(r->Terminate(), 0);
  EXPECT_EQ(Query(db, "select count(*) from dtx_outbox where state <> 1"), "0");
  std::set<std::string> committed;
  PGresult* ids = PQexec(db, "select message_id from dtx_outbox");
  ASSERT_EQ(PQresultStatus(ids), PGRES_TUPLES_OK);
  for (int i = 0; i < PQntuples(ids); ++i) committed.insert(PQgetvalue(ids, i, 0));
  PQclear(ids);
  PQfinish(db);
  const std::vector<brokers::Message> got = ReadStream(redis.Url(), "orders");
  std::set<std::string> published;
  for (const brokers::Message& m : got) published.insert(m.message_id);
  EXPECT_EQ(published, committed);  // every committed row, and nothing else
  ExpectPerKeyOrder(got);
  EXPECT_GT(commits.load(), 100);
  std::printf(
      "3 database crashes: %d acknowledged commits, %zu committed rows, %zu deliveries "
      "(%zu duplicates)\n",
      commits.load(), committed.size(), got.size(), got.size() - published.size());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dtx
