// dtx-bench: a load generator for DTM-compatible coordinators. It runs a fast participant
// in-process (an async HTTP server that answers SUCCESS, or FAILURE for a configured share of
// sagas), then N concurrent clients submit 2-step sagas over HTTP (optionally with wait_result) for
// a duration or a fixed count, optionally paced to a target rate, and it reports completed sagas/s,
// latency percentiles, errors and — given the coordinators' pids — their CPU time per saga from
// /proc and their peak RSS.
//
// Usage:
//   dtx-bench --server http://127.0.0.1:36789/api/dtmsvr [--clients 64] [--seconds 10 | --count N]
//             [--wait-result 1] [--fail-ratio 0] [--rate 0] [--server-pid PID[,PID...]]
//             [--store-pid PID[,PID...]] [--json] [--latency-log FILE] [--gids ordered|random]
//   dtx-bench --servers URL1,URL2,...   (the clients are spread round-robin over the coordinators)
//   dtx-bench --participant-only PORT   (only serve the fast participant until SIGINT/SIGTERM)
//   TLS: --participant-tls-cert FILE --participant-tls-key FILE serve the participant over https;
//        --ca-file FILE trusts that CA for an https:// coordinator (bench/tls_bench.sh).
//
// Only the DTM HTTP API is used (POST {server}/submit), so any DTM-compatible server can be driven.
// With --json, the human-readable report goes to stderr and one JSON object to stdout.
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "http/client.h"
#include "http/server.h"
#include "http/tls.h"
#include "runtime/io_pool.h"

namespace {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

// The participant: a path containing /fail answers FAILURE (409), anything else SUCCESS. It also
// sees each saga end — step 2's action succeeding, or step 1's compensation (the last call of a
// rollback) — which is how sagas submitted without wait_result are counted as completed.
class FastParticipant final : public dtx::http::Handler {
 public:
  asio::awaitable<dtx::http::Response> Handle(dtx::http::Request req) override {
    calls.fetch_add(1, std::memory_order_relaxed);
    dtx::http::Response r;
    if (req.path.ends_with("/notify")) {  // --mode notify: the receiver of a notification
      Ended(succeeded);
      r.body = "success";
      co_return r;
    }
    const bool fail = req.path.find("/fail") != std::string::npos;
    if (fail) {
      r.status = 409;
      r.body = R"({"dtm_result":"FAILURE"})";
    } else {
      r.body = R"({"dtm_result":"SUCCESS"})";
    }
    const auto op = req.QueryParam("op");
    const auto branch = req.QueryParam("branch_id");
    if (op && branch) {
      if (!fail && *op == "action" && *branch == "02") {
        Ended(succeeded);
      } else if (*op == "compensate" && *branch == "01") {
        Ended(rolled_back);
      }
    }
    co_return r;
  }
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> succeeded{0};
  std::atomic<uint64_t> rolled_back{0};
  std::atomic<int64_t> last_end_ns{0};  // steady clock

 private:
  void Ended(std::atomic<uint64_t>& counter) {
    counter.fetch_add(1, std::memory_order_relaxed);
    const int64_t now = SteadyClock::now().time_since_epoch().count();
    for (int64_t seen = last_end_ns.load(); now > seen;) {
      if (last_end_ns.compare_exchange_weak(seen, now)) break;
    }
  }
};

struct Stats {
  std::mutex mu;
  std::vector<double> latencies_ms;
  std::vector<std::pair<double, double>> timeline;  // (completion s since start, latency ms)
  uint64_t ok = 0;
  uint64_t rolled_back = 0;
  uint64_t errors = 0;
  std::string first_error;
  SteadyClock::time_point last_done;
};

struct Config {
  std::vector<std::string> servers;
  int clients = 64;
  double seconds = 10;
  uint64_t count = 0;  // > 0: a fixed number of sagas instead of a duration
  double rate = 0;     // > 0: sagas/s over all clients (paced; latency from the scheduled time)
  bool wait_result = true;
  double fail_ratio = 0;
  std::vector<int> server_pids;
  std::vector<int> store_pids;
  int participant_threads = 1;
  int client_threads = 1;
  int participant_only_port = -1;
  bool json = false;
  std::string latency_log;  // one "seconds_since_start latency_ms" line per saga
  // "ordered": ascending gids, as from the coordinator's newGid (time-ordered, which is how DTM
  // clients get gids); "random": 22 random base62 characters, as client-side UUIDs — every insert
  // lands on a different page of the gid indexes.
  std::string gids = "ordered";
  // saga; notify: best-effort notifications (POST /api/dtx/notify, first attempt at once, counted
  // when the receiver got it); notify-parked: first attempt in 1 h (nothing is delivered).
  std::string mode = "saga";
  std::string participant_tls_cert;  // with the key: the participant serves https
  std::string participant_tls_key;
  std::string ca_file;  // extra CA for an https:// coordinator
  // Business keys (docs/saga.md): 0 = none; -1 = one distinct key per saga (no contention); N > 0
  // = one of N hot keys per saga (ticket % N: sagas on one key run one at a time).
  int64_t business_keys = 0;
};

// Shared by the client coroutines: tickets hand out saga numbers (count mode, pacing).
struct Plan {
  SteadyClock::time_point start;
  SteadyClock::time_point end;  // duration mode
  std::atomic<uint64_t> next_ticket{0};
};

std::string RandomGid(std::mt19937& rng) {
  static constexpr char kAlphabet[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::uniform_int_distribution<int> pick(0, 61);
  std::string out(22, '0');
  for (char& c : out) c = kAlphabet[pick(rng)];
  return out;
}

asio::awaitable<void> ClientLoop(dtx::http::Client* client, const Config* cfg, std::string server,
                                 std::string part, int id, Plan* plan, Stats* stats) {
  std::mt19937 rng(static_cast<unsigned>(id) ^ static_cast<unsigned>(::getpid()) << 8);
  std::uniform_real_distribution<double> u(0, 1);
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const bool notify = cfg->mode != "saga";
  std::string url = server + "/submit";
  if (notify) {  // server is ".../api/dtmsvr"; notifications live beside it
    url = server.substr(0, server.rfind("/api/dtmsvr")) + "/api/dtx/notify";
  }
  for (;;) {
    const uint64_t ticket = plan->next_ticket.fetch_add(1, std::memory_order_relaxed);
    if (cfg->count > 0 && ticket >= cfg->count) break;
    SteadyClock::time_point scheduled = SteadyClock::now();
    if (cfg->rate > 0) {
      scheduled =
          plan->start + std::chrono::duration_cast<SteadyClock::duration>(
                            std::chrono::duration<double>(static_cast<double>(ticket) / cfg->rate));
      if (cfg->count == 0 && scheduled >= plan->end) break;
      if (scheduled > SteadyClock::now()) {
        timer.expires_at(scheduled);
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      }
    } else if (cfg->count == 0 && scheduled >= plan->end) {
      break;
    }
    const bool fail = u(rng) < cfg->fail_ratio;
    std::string gid = cfg->gids == "random" ? RandomGid(rng)
                                            : fmt::format("bench-{}-{:012d}", ::getpid(), ticket);
    std::string second = fail ? part + "/fail" : part + "/ok";
    std::string body = fmt::format(
        R"({{"gid":"{}","trans_type":"saga","wait_result":{},"steps":[{{"action":"{}/ok","compensate":"{}/ok"}},{{"action":"{}","compensate":"{}/ok"}}],"payloads":["{{\"amount\":30}}","{{\"amount\":30}}"]}})",
        gid, cfg->wait_result ? "true" : "false", part, part, second, part);
    if (cfg->business_keys != 0) {
      const std::string key =
          cfg->business_keys < 0
              ? "acct:" + gid
              : fmt::format("acct:{}", ticket % static_cast<uint64_t>(cfg->business_keys));
      body.insert(body.size() - 1, fmt::format(R"(,"business_keys":["{}"])", key));
    }
    if (notify) {
      body = fmt::format(
          R"({{"id":"{}","url":"{}/notify","payload":"{{\"amount\":30}}","schedule":[{}],"success":{{"body":"success"}}}})",
          gid, part, cfg->mode == "notify-parked" ? 3600 : 0);
    }
    dtx::http::ClientRequest req;
    req.method = "POST";
    req.url = url;
    req.body = std::move(body);
    req.headers.emplace_back("Content-Type", "application/json");
    req.timeout = std::chrono::seconds(30);
    auto r = co_await client->Send(std::move(req));
    const auto now = SteadyClock::now();
    double ms = std::chrono::duration<double, std::milli>(now - scheduled).count();
    std::lock_guard<std::mutex> lock(stats->mu);
    stats->last_done = std::max(stats->last_done, now);
    if (!cfg->latency_log.empty()) {
      stats->timeline.emplace_back(std::chrono::duration<double>(now - plan->start).count(), ms);
    }
    if (r.ok() && r->status == 200) {
      stats->ok++;
      stats->latencies_ms.push_back(ms);
    } else if (r.ok() && r->status == 409 && fail && cfg->wait_result) {
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

// utime+stime of a process in seconds, from /proc/PID/stat; -1 if it is gone.
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
  if (f.size() < 13) return -1;
  // Fields after ')' start at 3 (state); utime is 14, stime 15.
  double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  return (std::stod(f[14 - 3]) + std::stod(f[15 - 3])) / ticks;
}

// Bytes a process caused to be sent to the storage layer (write_bytes of /proc/PID/io): the WAL,
// checkpoints into the database file. -1 if unreadable.
double DiskWriteBytes(const std::vector<int>& pids) {
  double sum = 0;
  for (int pid : pids) {
    std::ifstream in(fmt::format("/proc/{}/io", pid));
    std::string key;
    double value = 0;
    bool found = false;
    while (in >> key >> value) {
      if (key == "write_bytes:") {
        sum += value;
        found = true;
        break;
      }
    }
    if (!found) return -1;
  }
  return sum;
}

double CpuSeconds(const std::vector<int>& pids) {
  double sum = 0;
  for (int pid : pids) sum += std::max(0.0, ProcessCpuSeconds(pid));
  return sum;
}

double SelfCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Busy CPU seconds of the whole machine (all cores), from /proc/stat.
double MachineBusySeconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  return static_cast<double>(user + nice + system + irq + softirq + steal) / ticks;
}

// A line of /proc/PID/status in KiB (VmHWM = peak RSS, VmRSS = current), -1 if absent.
long StatusKb(int pid, const char* key) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':') {
      return std::stol(line.substr(n + 1));
    }
  }
  return -1;
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t k = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

// --participant-only: serve the participant on a fixed port until SIGINT/SIGTERM.
int RunParticipantOnly(const Config& cfg) {
  dtx::runtime::IoPool pool(static_cast<size_t>(cfg.participant_threads));
  FastParticipant participant;
  dtx::http::ServerOptions so;
  so.port = static_cast<uint16_t>(cfg.participant_only_port);
  so.idle_timeout = std::chrono::hours(1);
  dtx::http::Server server(pool, so, participant);
  pool.Start();
  if (auto s = server.Start(); !s.ok()) {
    std::fprintf(stderr, "dtx-bench: participant: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("dtx-bench participant ready on 127.0.0.1:%u (/busi/ok, /busi/fail)\n",
              static_cast<unsigned>(server.port()));
  std::fflush(stdout);
  asio::io_context signals_ctx;
  asio::signal_set signals(signals_ctx, SIGINT, SIGTERM);
  signals.async_wait([](const boost::system::error_code&, int) {});
  signals_ctx.run();
  server.Stop();
  pool.Stop();
  pool.Join();
  std::printf("dtx-bench participant: %llu calls\n",
              static_cast<unsigned long long>(participant.calls.load()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  std::string server;
  CLI::App app{"dtx-bench: 2-step saga load generator for DTM-compatible coordinators"};
  app.add_option("--server", server,
                 "coordinator API base, e.g. http://127.0.0.1:36789/api/dtmsvr");
  app.add_option("--servers", cfg.servers, "several coordinators; clients spread round-robin")
      ->delimiter(',');
  app.add_option("--clients", cfg.clients, "concurrent clients")->capture_default_str();
  app.add_option("--seconds", cfg.seconds, "duration")->capture_default_str();
  app.add_option("--count", cfg.count, "a fixed number of sagas instead of a duration");
  app.add_option("--rate", cfg.rate, "target sagas/s over all clients (0 = as fast as possible)")
      ->capture_default_str();
  app.add_option("--wait-result", cfg.wait_result, "submit with wait_result")
      ->capture_default_str();
  app.add_option("--fail-ratio", cfg.fail_ratio, "share of sagas whose step 2 fails (rollback)")
      ->capture_default_str();
  app.add_option("--server-pid", cfg.server_pids, "coordinator pid(s), for CPU/saga and RSS")
      ->delimiter(',');
  app.add_option("--store-pid", cfg.store_pids, "database server pid(s), for store CPU/saga")
      ->delimiter(',');
  app.add_option("--participant-threads", cfg.participant_threads)->capture_default_str();
  app.add_option("--client-threads", cfg.client_threads)->capture_default_str();
  app.add_option("--mode", cfg.mode, "saga, notify (notifications), notify-parked (due in 1 h)")
      ->capture_default_str();
  app.add_option("--participant-only", cfg.participant_only_port,
                 "only serve the fast participant on this port until killed");
  app.add_option("--participant-tls-cert", cfg.participant_tls_cert,
                 "serve the participant over https with this PEM certificate");
  app.add_option("--participant-tls-key", cfg.participant_tls_key, "its PEM key");
  app.add_option("--ca-file", cfg.ca_file, "PEM CA trusted for an https:// coordinator");
  app.add_flag("--json", cfg.json, "one JSON object on stdout (report on stderr)");
  app.add_option("--business-keys", cfg.business_keys,
                 "0: none; -1: a distinct business key per saga; N: one of N hot keys per saga")
      ->capture_default_str();
  app.add_option("--gids", cfg.gids,
                 "ordered (ascending, like newGid's) or random (like client-side UUIDs)")
      ->check(CLI::IsMember({"ordered", "random"}))
      ->capture_default_str();
  app.add_option("--latency-log", cfg.latency_log,
                 "write 'seconds_since_start latency_ms' per saga to this file");
  CLI11_PARSE(app, argc, argv);
  if (cfg.participant_only_port >= 0) {
    if (cfg.participant_only_port > 65535 || cfg.participant_threads < 1) {
      std::fprintf(stderr, "dtx-bench: bad arguments\n");
      return 2;
    }
    return RunParticipantOnly(cfg);
  }
  if (!server.empty()) cfg.servers.insert(cfg.servers.begin(), server);
  if (cfg.servers.empty() || cfg.clients < 1 || cfg.clients > 10000 || cfg.seconds <= 0 ||
      cfg.fail_ratio < 0 || cfg.fail_ratio > 1 || cfg.rate < 0 || cfg.participant_threads < 1 ||
      cfg.client_threads < 1) {
    std::fprintf(stderr, "dtx-bench: bad arguments (--server or --servers is required)\n");
    return 2;
  }
  FILE* report = cfg.json ? stderr : stdout;

  dtx::runtime::IoPool part_pool(static_cast<size_t>(cfg.participant_threads));
  FastParticipant participant;
  dtx::http::ServerOptions so;
  so.port = 0;
  if (!cfg.participant_tls_cert.empty()) {
    auto tls = dtx::http::MakeServerTlsContext(cfg.participant_tls_cert, cfg.participant_tls_key);
    if (!tls.ok()) {
      std::fprintf(stderr, "dtx-bench: %s\n", tls.status().ToString().c_str());
      return 2;
    }
    so.tls = *tls;
  }
  dtx::http::Server part_server(part_pool, so, participant);
  part_pool.Start();
  if (auto s = part_server.Start(); !s.ok()) {
    std::fprintf(stderr, "dtx-bench: participant: %s\n", s.ToString().c_str());
    return 1;
  }
  std::string part =
      fmt::format("{}://127.0.0.1:{}/busi", so.tls ? "https" : "http", part_server.port());

  dtx::runtime::IoPool client_pool(static_cast<size_t>(cfg.client_threads));
  std::vector<std::unique_ptr<dtx::http::Client>> clients;
  dtx::http::ClientOptions co;
  co.max_connections_per_host = static_cast<size_t>(cfg.clients);
  co.max_idle_per_host = static_cast<size_t>(cfg.clients);
  if (!cfg.ca_file.empty()) {
    auto tls = dtx::http::MakeClientTlsContext(cfg.ca_file);
    if (!tls.ok()) {
      std::fprintf(stderr, "dtx-bench: %s\n", tls.status().ToString().c_str());
      return 2;
    }
    co.tls = *tls;
  }
  for (size_t i = 0; i < client_pool.size(); ++i) {
    clients.push_back(std::make_unique<dtx::http::Client>(client_pool.Get(i).get_executor(), co));
  }
  client_pool.Start();

  Stats stats;
  Plan plan;
  const double server_cpu_before = CpuSeconds(cfg.server_pids);
  const double store_cpu_before = CpuSeconds(cfg.store_pids);
  const double disk_before = DiskWriteBytes(cfg.server_pids);
  const double self_cpu_before = SelfCpuSeconds();
  const double machine_before = MachineBusySeconds();
  plan.start = SteadyClock::now();
  plan.end = plan.start + std::chrono::milliseconds(static_cast<int64_t>(cfg.seconds * 1000));
  stats.last_done = plan.start;
  std::vector<std::future<void>> done;
  for (int i = 0; i < cfg.clients; ++i) {
    size_t c = static_cast<size_t>(i) % clients.size();
    const std::string& srv = cfg.servers[static_cast<size_t>(i) % cfg.servers.size()];
    done.push_back(asio::co_spawn(client_pool.Get(c),
                                  ClientLoop(clients[c].get(), &cfg, srv, part, i, &plan, &stats),
                                  asio::use_future));
  }
  for (auto& f : done) f.wait();
  auto end = SteadyClock::now();
  if (cfg.mode != "saga") cfg.wait_result = false;  // a notification is answered when accepted
  if (!cfg.wait_result && cfg.mode != "notify-parked") {
    // The submits were answered when accepted: wait (bounded) until the participant has seen every
    // accepted saga end, and count the sagas as completed then.
    const uint64_t accepted = stats.ok;
    const auto give_up = SteadyClock::now() + std::chrono::seconds(60);
    while (participant.succeeded.load() + participant.rolled_back.load() < accepted &&
           SteadyClock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const uint64_t ended = participant.succeeded.load() + participant.rolled_back.load();
    if (ended < accepted) {
      stats.errors += accepted - ended;
      if (stats.first_error.empty()) {
        stats.first_error =
            fmt::format("{} accepted sagas did not finish within 60 s", accepted - ended);
      }
    }
    stats.ok = participant.succeeded.load();
    stats.rolled_back = participant.rolled_back.load();
    end = std::max(end,
                   SteadyClock::time_point(SteadyClock::duration(participant.last_end_ns.load())));
  }
  const double elapsed = std::chrono::duration<double>(end - plan.start).count();
  const double server_cpu = CpuSeconds(cfg.server_pids) - server_cpu_before;
  const double store_cpu = CpuSeconds(cfg.store_pids) - store_cpu_before;
  const double disk_after = DiskWriteBytes(cfg.server_pids);

  const double self_cpu = SelfCpuSeconds() - self_cpu_before;
  const double machine = MachineBusySeconds() - machine_before;
  // What else ran on the machine meanwhile (compilers of other engineers...): a noisy-run signal.
  const double other_cpu = std::max(0.0, machine - server_cpu - store_cpu - self_cpu);

  const uint64_t completed = stats.ok + stats.rolled_back;
  const double disk_kib_per_saga =
      disk_before >= 0 && disk_after >= 0 && completed > 0
          ? (disk_after - disk_before) / 1024 / static_cast<double>(completed)
          : -1;
  std::vector<double> lat = stats.latencies_ms;
  const double throughput = static_cast<double>(completed) / elapsed;
  const double p50 = Percentile(lat, 0.50), p90 = Percentile(lat, 0.90),
               p99 = Percentile(lat, 0.99);
  const double max = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
  const double per_saga = completed > 0 ? 1e6 / static_cast<double>(completed) : 0;
  long peak_rss = 0, rss = 0;
  for (int pid : cfg.server_pids) {
    peak_rss = std::max(peak_rss, StatusKb(pid, "VmHWM"));
    rss = std::max(rss, StatusKb(pid, "VmRSS"));
  }

  std::fprintf(report,
               "dtx-bench: %d clients, %zu server(s), %.1f s, wait_result=%d, fail_ratio=%.2f, "
               "%s gids%s\n",
               cfg.clients, cfg.servers.size(), elapsed, cfg.wait_result ? 1 : 0, cfg.fail_ratio,
               cfg.gids.c_str(),
               cfg.rate > 0 ? fmt::format(", paced at {:.0f}/s", cfg.rate).c_str() : "");
  std::fprintf(
      report, "  completed      %llu sagas (%llu succeeded, %llu rolled back), %llu errors\n",
      static_cast<unsigned long long>(completed), static_cast<unsigned long long>(stats.ok),
      static_cast<unsigned long long>(stats.rolled_back),
      static_cast<unsigned long long>(stats.errors));
  std::fprintf(report, "  throughput     %.0f sagas/s\n", throughput);
  std::fprintf(report, "  %s p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n",
               cfg.wait_result ? "latency ms    " : "accept ms     ", p50, p90, p99, max);
  if (!cfg.wait_result) {
    std::fprintf(report,
                 "  (without wait_result: completed = sagas whose last call reached the "
                 "participant; latency = time to the accepting answer)\n");
  }
  std::fprintf(report, "  participant    %llu calls\n",
               static_cast<unsigned long long>(participant.calls.load()));
  if (!cfg.server_pids.empty() && completed > 0) {
    std::fprintf(report,
                 "  server CPU     %.1f us/saga (%.2f CPU-s), peak RSS %ld KiB, RSS %ld KiB\n",
                 server_cpu * per_saga, server_cpu, peak_rss, rss);
    if (disk_kib_per_saga >= 0) {
      std::fprintf(report, "  server disk    %.1f KiB written per saga (WAL + checkpoints)\n",
                   disk_kib_per_saga);
    }
  }
  if (!cfg.store_pids.empty() && completed > 0) {
    std::fprintf(report, "  store CPU      %.1f us/saga (%.2f CPU-s)\n", store_cpu * per_saga,
                 store_cpu);
  }
  if (completed > 0) {
    std::fprintf(report, "  bench CPU      %.1f us/saga (load generator + participant)\n",
                 self_cpu * per_saga);
  }
  std::fprintf(report, "  other CPU      %.2f CPU-s (other processes on the machine)\n", other_cpu);
  if (!stats.first_error.empty()) {
    std::fprintf(report, "  first error    %s\n", stats.first_error.c_str());
  }
  if (!cfg.latency_log.empty()) {
    std::sort(stats.timeline.begin(), stats.timeline.end());
    if (FILE* f = std::fopen(cfg.latency_log.c_str(), "w")) {
      for (const auto& [t, ms] : stats.timeline) std::fprintf(f, "%.4f %.3f\n", t, ms);
      std::fclose(f);
    }
  }
  if (cfg.json) {
    std::printf(
        "{\"clients\":%d,\"servers\":%zu,\"gids\":\"%s\",\"wait_result\":%s,\"fail_ratio\":%.3f,"
        "\"rate\":%.1f,"
        "\"seconds\":%.3f,\"completed\":%llu,\"succeeded\":%llu,\"rolled_back\":%llu,"
        "\"errors\":%llu,\"sagas_per_s\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
        "\"max_ms\":%.3f,\"server_cpu_us_per_saga\":%.1f,\"server_peak_rss_kib\":%ld,"
        "\"server_rss_kib\":%ld,\"store_cpu_us_per_saga\":%.1f,\"bench_cpu_us_per_saga\":%.1f,"
        "\"other_cpu_s\":%.2f,\"server_disk_kib_per_saga\":%.2f,\"participant_calls\":%llu}\n",
        cfg.clients, cfg.servers.size(), cfg.gids.c_str(), cfg.wait_result ? "true" : "false",
        cfg.fail_ratio, cfg.rate, elapsed, static_cast<unsigned long long>(completed),
        static_cast<unsigned long long>(stats.ok),
        static_cast<unsigned long long>(stats.rolled_back),
        static_cast<unsigned long long>(stats.errors), throughput, p50, p90, p99, max,
        server_cpu * per_saga, peak_rss, rss, store_cpu * per_saga, self_cpu * per_saga, other_cpu,
        disk_kib_per_saga, static_cast<unsigned long long>(participant.calls.load()));
  }
  part_server.Stop();
  client_pool.Stop();
  client_pool.Join();
  part_pool.Stop();
  part_pool.Join();
  return stats.errors == 0 && completed > 0 ? 0 : 1;
}
