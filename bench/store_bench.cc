// dtx-store-bench: the store's raw durable commit rate, without HTTP or the engine. N closed-loop
// writers (each waits for its write's callback before the next, like a request handler) drive a
// dtx::store::Store opened from the same --store spec as `dtx server`, so the batches the store
// forms (group commit) come only from concurrency.
//
//   dtx-store-bench --store sqlite:/tmp/x.db [--writers 64] [--seconds 3] [--workload saga]
//   [--json] dtx-store-bench --store
//   'postgres://postgres@127.0.0.1:5432/dtx_test?schema=bench_store' dtx-store-bench --fsync
//   /tmp/x.bin [--seconds 2]   (write 4 KiB + fdatasync latency)
//
// Workloads (what a 2-step saga writes through the engine):
//   create: one Create (1 global row + 4 branch rows) per item.
//   saga:   Create, then one Update (both actions succeeded, global succeed): the 2 commits a
//           2-step saga waits for (the engine writes step 1's success with the final update).
//           Reported per saga.
// Counters: items/s, write operations/s, operations per COMMIT (one fsync / COMMIT each).
#include <fcntl.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "store/store.h"

namespace {

namespace asio = boost::asio;
using dtx::core::BranchStatus;
using dtx::core::GlobalStatus;
using SteadyClock = std::chrono::steady_clock;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

dtx::core::TransSnapshot Saga(const std::string& gid, int64_t now) {
  dtx::core::TransSnapshot t;
  t.global.gid = gid;
  t.global.status = GlobalStatus::kSubmitted;
  t.global.create_time_ms = now;
  t.global.update_time_ms = now;
  t.global.next_cron_interval_ms = 10'000;
  t.global.next_cron_time_ms = now + 10'000;
  for (const char* branch : {"01", "02"}) {
    for (const char* op : {"compensate", "action"}) {
      dtx::core::BranchRow b;
      b.gid = gid;
      b.url = "http://127.0.0.1:8081/busi/ok";
      b.bin_data = R"({"amount":30})";
      b.branch_id = branch;
      b.op = op;
      b.create_time_ms = now;
      b.update_time_ms = now;
      t.branches.push_back(std::move(b));
    }
  }
  return t;
}

dtx::core::TransUpdate SagaDone(const std::string& gid, int64_t now) {
  dtx::core::TransUpdate u;
  u.gid = gid;
  u.expected_status = GlobalStatus::kSubmitted;
  u.update_time_ms = now;
  for (const char* branch : {"01", "02"}) {
    dtx::core::TransUpdate::BranchUpdate b;
    b.branch_id = branch;
    b.op = "action";
    b.status = BranchStatus::kSucceed;
    b.attempts = 1;
    b.finish_time_ms = now;
    u.branches.push_back(std::move(b));
  }
  u.new_status = GlobalStatus::kSucceed;
  u.finish_time_ms = now;
  return u;
}

// The closed-loop writers. All state lives on one io_context thread; store callbacks post back.
class Driver {
 public:
  Driver(dtx::store::Store& store, asio::io_context& ctx, bool saga_workload,
         SteadyClock::time_point end)
      : store_(store), ctx_(ctx), saga_(saga_workload), end_(end) {}

  void StartWriter(int id) { Next(id, 0, 0); }

  std::atomic<uint64_t> items{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<int> live{0};

 private:
  // step 0: Create; 1: the final Update (saga workload only).
  void Next(int id, uint64_t n, int step) {
    if (step == 0) {
      if (SteadyClock::now() >= end_) return;
      live.fetch_add(1);
      std::string gid =
          "sb-" + std::to_string(::getpid()) + "-" + std::to_string(id) + "-" + std::to_string(n);
      store_.Create(Saga(gid, NowMs()),
                    [this, id, n](dtx::Status s) { Done(id, n, 0, std::move(s)); });
      return;
    }
    std::string gid =
        "sb-" + std::to_string(::getpid()) + "-" + std::to_string(id) + "-" + std::to_string(n);
    store_.Update(SagaDone(gid, NowMs()),
                  [this, id, n, step](dtx::Status s) { Done(id, n, step, std::move(s)); });
  }

  void Done(int id, uint64_t n, int step, dtx::Status s) {
    asio::post(ctx_, [this, id, n, step, s = std::move(s)] {
      if (!s.ok()) {
        if (errors.fetch_add(1) == 0) {
          std::fprintf(stderr, "dtx-store-bench: %s\n", s.ToString().c_str());
        }
      }
      const bool last = !saga_ || step == 1 || !s.ok();
      if (last) {
        if (s.ok()) items.fetch_add(1);
        live.fetch_sub(1);
        Next(id, n + 1, 0);
      } else {
        Next(id, n, step + 1);
      }
    });
  }

  dtx::store::Store& store_;
  asio::io_context& ctx_;
  bool saga_;
  SteadyClock::time_point end_;
};

double ProcessCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// utime+stime (seconds) of a process, from /proc/PID/stat; 0 if it is gone.
double PidCpuSeconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string st((std::istreambuf_iterator<char>(in)), {});
  const size_t rp = st.rfind(')');
  if (rp == std::string::npos) return 0;
  std::istringstream fields(st.substr(rp + 2));
  std::string f;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stod(f);
    if (i == 15) stime = std::stod(f);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// PID and its direct children (a PostgreSQL postmaster and its backends, WAL writer, ...).
std::vector<int> WithChildren(int pid) {
  std::vector<int> pids{pid};
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "stat");
    std::string st((std::istreambuf_iterator<char>(in)), {});
    const size_t rp = st.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream fields(st.substr(rp + 2));
    std::string state;
    int ppid = 0;
    if (fields >> state >> ppid && ppid == pid) pids.push_back(std::stoi(name));
  }
  return pids;
}

double SumCpuSeconds(const std::vector<int>& pids) {
  double sum = 0;
  for (int pid : pids) sum += PidCpuSeconds(pid);
  return sum;
}

int FsyncBench(const std::string& path, double seconds, bool json) {
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  if (fd < 0) {
    std::perror("open");
    return 1;
  }
  std::string block(4096, 'x');
  std::vector<double> us;
  const auto end =
      SteadyClock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  off_t off = 0;
  while (SteadyClock::now() < end) {
    const auto t0 = SteadyClock::now();
    if (::pwrite(fd, block.data(), block.size(), off) != static_cast<ssize_t>(block.size()) ||
        ::fdatasync(fd) != 0) {
      std::perror("write/fdatasync");
      ::close(fd);
      return 1;
    }
    us.push_back(std::chrono::duration<double, std::micro>(SteadyClock::now() - t0).count());
    off = (off + 4096) % (1 << 20);  // a 1 MiB ring, like a WAL being reused
  }
  ::close(fd);
  ::unlink(path.c_str());
  std::sort(us.begin(), us.end());
  const double p50 = us[us.size() / 2];
  const double p99 = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  if (json) {
    std::printf("{\"fsyncs\":%zu,\"fsync_p50_us\":%.1f,\"fsync_p99_us\":%.1f}\n", us.size(), p50,
                p99);
  } else {
    std::printf("fsync: %zu × (pwrite 4 KiB + fdatasync): p50 %.1f µs, p99 %.1f µs\n", us.size(),
                p50, p99);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string spec;
  std::string fsync_path;
  std::string workload = "saga";
  int writers = 64;
  int store_parent = 0;
  double seconds = 3;
  bool json = false;
  CLI::App app{"dtx-store-bench: durable commits/s of the dtx store (closed-loop writers)"};
  app.add_option("--store", spec, "sqlite:PATH or postgres://...?schema=NAME (as dtx server)");
  app.add_option("--fsync", fsync_path, "instead: measure pwrite+fdatasync latency on this file");
  app.add_option("--workload", workload, "saga | create")->capture_default_str();
  app.add_option("--writers", writers, "concurrent closed-loop writers")->capture_default_str();
  app.add_option("--seconds", seconds, "duration")->capture_default_str();
  app.add_option(
      "--store-parent", store_parent,
      "database server pid (e.g. the postmaster): its and its children's CPU is reported");
  app.add_flag("--json", json, "one JSON object on stdout");
  CLI11_PARSE(app, argc, argv);
  if (!fsync_path.empty()) return FsyncBench(fsync_path, seconds, json);
  if (spec.empty() || writers < 1 || seconds <= 0 || (workload != "saga" && workload != "create")) {
    std::fprintf(stderr, "dtx-store-bench: bad arguments (--store or --fsync is required)\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  // The same allocator settings as `dtx server` (tools/dtx/server_command.cc), so the store costs
  // here what it costs inside the coordinator.
  mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
  mallopt(M_TOP_PAD, 16 * 1024 * 1024);
  mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
  auto opened = dtx::store::OpenStore(spec);
  if (!opened.ok()) {
    std::fprintf(stderr, "dtx-store-bench: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<dtx::store::Store> store = std::move(opened).value();

  asio::io_context ctx;
  auto guard = asio::make_work_guard(ctx);
  std::thread loop([&ctx] { ctx.run(); });
  const dtx::store::StoreStats before = store->Stats();
  const double cpu_before = ProcessCpuSeconds();
  const std::vector<int> store_pids =
      store_parent > 0 ? WithChildren(store_parent) : std::vector<int>{};
  const double store_cpu_before = SumCpuSeconds(store_pids);
  const auto start = SteadyClock::now();
  Driver driver(*store, ctx, workload == "saga",
                start + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
  asio::post(ctx, [&] {
    for (int i = 0; i < writers; ++i) driver.StartWriter(i);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
  while (driver.live.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const double elapsed = std::chrono::duration<double>(SteadyClock::now() - start).count();
  const dtx::store::StoreStats after = store->Stats();
  const double cpu = ProcessCpuSeconds() - cpu_before;
  const double store_cpu = SumCpuSeconds(store_pids) - store_cpu_before;
  guard.reset();
  loop.join();
  store->Close();

  const double items = static_cast<double>(driver.items.load());
  const double ops = static_cast<double>(after.write_ops - before.write_ops);
  const double commits = static_cast<double>(after.commits - before.commits);
  const double cpu_us = items > 0 ? cpu * 1e6 / items : 0;
  const double store_cpu_us = items > 0 && store_parent > 0 ? store_cpu * 1e6 / items : 0;
  const std::string backend = spec.rfind("sqlite:", 0) == 0 ? "sqlite" : "postgres";
  if (json) {
    std::printf(
        "{\"store\":\"%s\",\"workload\":\"%s\",\"writers\":%d,\"items_per_s\":%.0f,"
        "\"ops_per_s\":%.0f,\"commits_per_s\":%.0f,\"ops_per_commit\":%.1f,"
        "\"cpu_us_per_item\":%.1f,\"store_server_cpu_us_per_item\":%.1f,\"errors\":%llu}\n",
        backend.c_str(), workload.c_str(), writers, items / elapsed, ops / elapsed,
        commits / elapsed, commits > 0 ? ops / commits : 0, cpu_us, store_cpu_us,
        static_cast<unsigned long long>(driver.errors.load()));
  } else {
    std::printf(
        "%s %s, %d writers: %.0f %s/s, %.0f write ops/s, %.0f commits/s, %.1f ops/commit, "
        "%.1f CPU-µs per %s (this process), %llu errors\n",
        backend.c_str(), workload.c_str(), writers, items / elapsed,
        workload == "saga" ? "sagas" : "creates", ops / elapsed, commits / elapsed,
        commits > 0 ? ops / commits : 0, cpu_us, workload == "saga" ? "saga" : "create",
        static_cast<unsigned long long>(driver.errors.load()));
    if (store_parent > 0) {
      std::printf("  database server: %.1f CPU-µs per %s\n", store_cpu_us,
                  workload == "saga" ? "saga" : "create");
    }
  }
  return driver.errors.load() == 0 && items > 0 ? 0 : 1;
}
