// dtx-bench: a load generator for DTM-compatible coordinators. It runs a fast participant
// in-process (an async HTTP server that answers SUCCESS, or FAILURE for a configured share of
// sagas), then N concurrent clients submit 2-step sagas over HTTP (optionally with wait_result) for
// a duration, and it reports completed sagas/s, latency percentiles, errors and — given the
// coordinator's pid — its CPU time per saga from /proc and its peak RSS.
//
// Usage: dtx-bench --server http://127.0.0.1:36789/api/dtmsvr [--clients 64] [--seconds 10]
//                  [--wait-result 1] [--fail-ratio 0] [--server-pid PID] [--participant-threads 1]
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "http/client.h"
#include "http/io_pool.h"
#include "http/server.h"

namespace {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

// The participant: /ok answers SUCCESS, /fail answers FAILURE (409).
class FastParticipant final : public dtx::http::Handler {
 public:
  asio::awaitable<dtx::http::Response> Handle(dtx::http::Request req) override {
    calls.fetch_add(1, std::memory_order_relaxed);
    dtx::http::Response r;
    if (req.path.find("/fail") != std::string::npos) {
      r.status = 409;
      r.body = R"({"dtm_result":"FAILURE"})";
    } else {
      r.body = R"({"dtm_result":"SUCCESS"})";
    }
    co_return r;
  }
  std::atomic<uint64_t> calls{0};
};

struct Stats {
  std::mutex mu;
  std::vector<double> latencies_ms;
  uint64_t ok = 0;
  uint64_t rolled_back = 0;
  uint64_t errors = 0;
  std::string first_error;
};

struct Config {
  std::string server;
  int clients = 64;
  double seconds = 10;
  bool wait_result = true;
  double fail_ratio = 0;
  int server_pid = 0;
  int participant_threads = 1;
  int client_threads = 1;
};

asio::awaitable<void> ClientLoop(dtx::http::Client* client, const Config* cfg, std::string part,
                                 int id, SteadyClock::time_point end, Stats* stats) {
  std::mt19937 rng(static_cast<unsigned>(id));
  std::uniform_real_distribution<double> u(0, 1);
  uint64_t n = 0;
  while (SteadyClock::now() < end) {
    const bool fail = u(rng) < cfg->fail_ratio;
    std::string gid = fmt::format("bench-{}-{}-{}", ::getpid(), id, n++);
    std::string second = fail ? part + "/fail" : part + "/ok";
    std::string body = fmt::format(
        R"({{"gid":"{}","trans_type":"saga","wait_result":{},"steps":[{{"action":"{}/ok","compensate":"{}/ok"}},{{"action":"{}","compensate":"{}/ok"}}],"payloads":["{{\"amount\":30}}","{{\"amount\":30}}"]}})",
        gid, cfg->wait_result ? "true" : "false", part, part, second, part);
    dtx::http::ClientRequest req;
    req.method = "POST";
    req.url = cfg->server + "/submit";
    req.body = std::move(body);
    req.headers.emplace_back("Content-Type", "application/json");
    req.timeout = std::chrono::seconds(30);
    auto start = SteadyClock::now();
    auto r = co_await client->Send(std::move(req));
    double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
    std::lock_guard<std::mutex> lock(stats->mu);
    if (r.ok() && r->status == 200) {
      stats->ok++;
      stats->latencies_ms.push_back(ms);
    } else if (r.ok() && r->status == 409 && fail) {
      stats->rolled_back++;  // wait_result answers 409 with the rollback reason
      stats->latencies_ms.push_back(ms);
    } else {
      stats->errors++;
      if (stats->first_error.empty()) {
        stats->first_error = r.ok() ? fmt::format("HTTP {}: {}", r->status, r->body.substr(0, 200))
                                    : r.status().ToString();
      }
    }
  }
}

// utime+stime of a process in seconds, from /proc/PID/stat.
double ProcessCpuSeconds(int pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string s((std::istreambuf_iterator<char>(in)), {});
  auto rp = s.rfind(')');
  if (rp == std::string::npos) return -1;
  std::vector<std::string> f;
  size_t pos = rp + 2;
  while (pos < s.size()) {
    size_t sp = s.find(' ', pos);
    f.push_back(s.substr(pos, sp - pos));
    if (sp == std::string::npos) break;
    pos = sp + 1;
  }
  // Fields after ')' start at 3 (state); utime is 14, stime 15.
  double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  return (std::stod(f[14 - 3]) + std::stod(f[15 - 3])) / ticks;
}

long PeakRssKb(int pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t k = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  CLI::App app{"dtx-bench: 2-step saga load generator for DTM-compatible coordinators"};
  app.add_option("--server", cfg.server,
                 "coordinator API base, e.g. http://127.0.0.1:36789/api/dtmsvr")
      ->required();
  app.add_option("--clients", cfg.clients, "concurrent clients")->capture_default_str();
  app.add_option("--seconds", cfg.seconds, "duration")->capture_default_str();
  app.add_option("--wait-result", cfg.wait_result, "submit with wait_result")
      ->capture_default_str();
  app.add_option("--fail-ratio", cfg.fail_ratio, "share of sagas whose step 2 fails (rollback)")
      ->capture_default_str();
  app.add_option("--server-pid", cfg.server_pid, "coordinator pid, for CPU/saga and RSS");
  app.add_option("--participant-threads", cfg.participant_threads)->capture_default_str();
  app.add_option("--client-threads", cfg.client_threads)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (cfg.clients < 1 || cfg.clients > 10000 || cfg.seconds <= 0 || cfg.fail_ratio < 0 ||
      cfg.fail_ratio > 1) {
    std::fprintf(stderr, "dtx-bench: bad arguments\n");
    return 2;
  }

  dtx::http::IoPool part_pool(static_cast<size_t>(cfg.participant_threads));
  FastParticipant participant;
  dtx::http::ServerOptions so;
  so.port = 0;
  dtx::http::Server part_server(part_pool, so, participant);
  part_pool.Start();
  if (auto s = part_server.Start(); !s.ok()) {
    std::fprintf(stderr, "dtx-bench: participant: %s\n", s.ToString().c_str());
    return 1;
  }
  std::string part = fmt::format("http://127.0.0.1:{}/busi", part_server.port());

  dtx::http::IoPool client_pool(static_cast<size_t>(cfg.client_threads));
  std::vector<std::unique_ptr<dtx::http::Client>> clients;
  dtx::http::ClientOptions co;
  co.max_connections_per_host = static_cast<size_t>(cfg.clients);
  co.max_idle_per_host = static_cast<size_t>(cfg.clients);
  for (size_t i = 0; i < client_pool.size(); ++i) {
    clients.push_back(std::make_unique<dtx::http::Client>(client_pool.Get(i).get_executor(), co));
  }
  client_pool.Start();

  Stats stats;
  double cpu_before = cfg.server_pid ? ProcessCpuSeconds(cfg.server_pid) : 0;
  auto start = SteadyClock::now();
  auto end = start + std::chrono::milliseconds(static_cast<int64_t>(cfg.seconds * 1000));
  std::vector<std::future<void>> done;
  for (int i = 0; i < cfg.clients; ++i) {
    size_t c = static_cast<size_t>(i) % clients.size();
    done.push_back(asio::co_spawn(client_pool.Get(c),
                                  ClientLoop(clients[c].get(), &cfg, part, i, end, &stats),
                                  asio::use_future));
  }
  for (auto& f : done) f.wait();
  double elapsed = std::chrono::duration<double>(SteadyClock::now() - start).count();
  double cpu_after = cfg.server_pid ? ProcessCpuSeconds(cfg.server_pid) : 0;

  uint64_t completed = stats.ok + stats.rolled_back;
  std::vector<double> lat = stats.latencies_ms;
  std::printf("dtx-bench: %d clients, %.1f s, wait_result=%d, fail_ratio=%.2f\n", cfg.clients,
              elapsed, cfg.wait_result ? 1 : 0, cfg.fail_ratio);
  std::printf("  completed      %llu sagas (%llu succeeded, %llu rolled back), %llu errors\n",
              static_cast<unsigned long long>(completed), static_cast<unsigned long long>(stats.ok),
              static_cast<unsigned long long>(stats.rolled_back),
              static_cast<unsigned long long>(stats.errors));
  std::printf("  throughput     %.0f sagas/s\n", static_cast<double>(completed) / elapsed);
  std::printf("  latency ms     p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", Percentile(lat, 0.50),
              Percentile(lat, 0.90), Percentile(lat, 0.99),
              lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end()));
  std::printf("  participant    %llu calls\n",
              static_cast<unsigned long long>(participant.calls.load()));
  if (cfg.server_pid && completed > 0) {
    std::printf("  server CPU     %.1f us/saga (%.2f CPU-s), peak RSS %ld KiB\n",
                (cpu_after - cpu_before) * 1e6 / static_cast<double>(completed),
                cpu_after - cpu_before, PeakRssKb(cfg.server_pid));
  }
  if (!stats.first_error.empty()) std::printf("  first error    %s\n", stats.first_error.c_str());
  part_server.Stop();
  client_pool.Stop();
  client_pool.Join();
  part_pool.Stop();
  part_pool.Join();
  return stats.errors == 0 && completed > 0 ? 0 : 1;
}
