// store_benchmark: durable Creates per second and operations per COMMIT with N concurrent writers,
// on SQLite (a temp file) and on PostgreSQL (DTX_TEST_PG_URL, in a fresh schema dropped afterwards;
// skipped when unset). Each writer is a closed loop, like a request handler: it submits one Create
// (1 global row + 2 branch rows) and waits for its callback before the next, so the batches the
// store forms come only from concurrency.
//
//   ninja -C build store_benchmark     (EXCLUDE_FROM_ALL)
//   DTX_TEST_PG_URL=postgres://postgres@127.0.0.1:25433/dtx_test build/src/store/store_benchmark
//
// Counters: items_per_second = creates/s; ops_per_commit = write operations per COMMIT (fsync).
// DTX_BENCH_PG_WRITERS overrides PostgresOptions::writer_connections (default 2).
#include <benchmark/benchmark.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <memory>
#include <string>

#include "store/store.h"

namespace dtx::store {
namespace {

enum Backend : int64_t { kSqlite = 0, kPostgres = 1 };

std::unique_ptr<Store> g_store;
StoreStats g_before;
std::string g_schema;         // PostgreSQL
std::filesystem::path g_dir;  // SQLite
std::atomic<uint64_t> g_next_gid{0};

std::string PgUrl() {
  const char* url = std::getenv("DTX_TEST_PG_URL");
  return url == nullptr ? std::string() : std::string(url);
}

void DropSchema(const std::string& schema) {
  PGconn* c = PQconnectdb(PgUrl().c_str());
  PQclear(PQexec(c, "SET client_min_messages TO warning"));
  PQclear(PQexec(c, ("DROP SCHEMA IF EXISTS " + schema + " CASCADE").c_str()));
  PQfinish(c);
}

core::TransSnapshot Trans(uint64_t n) {
  core::TransSnapshot t;
  t.global.gid = "bench-" + std::to_string(n);
  t.global.status = core::GlobalStatus::kSubmitted;
  t.global.create_time_ms = 1'700'000'000'000;
  t.global.update_time_ms = t.global.create_time_ms;
  t.global.next_cron_interval_ms = 10'000;
  t.global.next_cron_time_ms = t.global.create_time_ms + 10'000;
  for (const char* op : {"compensate", "action"}) {
    core::BranchRow b;
    b.url = std::string("http://busi.example:8081/api/") + op;
    b.bin_data = R"({"amount":30,"user":"u-1"})";
    b.branch_id = "01";
    b.op = op;
    t.branches.push_back(std::move(b));
  }
  return t;
}

bool Open(benchmark::State& state) {
  if (state.range(0) == kPostgres) {
    if (PgUrl().empty()) return false;
    g_schema = "bench_" + std::to_string(getpid());
    DropSchema(g_schema);
    PostgresOptions o;
    o.url = PgUrl();
    o.schema = g_schema;
    if (const char* w = std::getenv("DTX_BENCH_PG_WRITERS")) o.writer_connections = std::atoi(w);
    auto r = OpenPostgresStore(o);
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
      return false;
    }
    g_store = std::move(r).value();
  } else {
    g_dir = std::filesystem::temp_directory_path() / ("dtx_bench_" + std::to_string(getpid()));
    std::filesystem::remove_all(g_dir);
    SqliteOptions o;
    o.path = (g_dir / "dtx.db").string();
    auto r = OpenSqliteStore(o);
    if (!r.ok()) return false;
    g_store = std::move(r).value();
  }
  g_before = g_store->Stats();
  return true;
}

void Close(benchmark::State& state) {
  StoreStats after = g_store->Stats();
  const double ops = static_cast<double>(after.write_ops - g_before.write_ops);
  const double commits = static_cast<double>(after.commits - g_before.commits);
  state.counters["ops_per_commit"] = commits > 0 ? ops / commits : 0;
  g_store->Close();
  g_store.reset();
  if (state.range(0) == kPostgres) {
    DropSchema(g_schema);
  } else {
    std::filesystem::remove_all(g_dir);
  }
}

void BM_ClosedLoopCreate(benchmark::State& state) {
  // Thread 0 opens the store before the loop's start barrier and closes it after the end barrier.
  if (state.thread_index() == 0 && !Open(state)) {
    state.SkipWithError(state.range(0) == kPostgres ? "DTX_TEST_PG_URL unset or unreachable"
                                                    : "cannot open sqlite store");
  }
  int64_t errors = 0;
  for (auto _ : state) {
    if (g_store == nullptr) break;
    auto p = std::make_shared<std::promise<Status>>();
    auto f = p->get_future();
    g_store->Create(Trans(g_next_gid.fetch_add(1)), [p](Status s) { p->set_value(std::move(s)); });
    if (f.wait_for(std::chrono::seconds(60)) != std::future_status::ready || !f.get().ok()) {
      ++errors;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["errors"] = static_cast<double>(errors);
  if (state.thread_index() == 0 && g_store != nullptr) Close(state);
}

// Open loop: 2000 Creates submitted at once, then waited for; the batches are as full as
// max_batch_ops allows, so this is the store's ceiling rather than a request pattern.
void BM_BurstCreate(benchmark::State& state) {
  if (!Open(state)) {
    state.SkipWithError(state.range(0) == kPostgres ? "DTX_TEST_PG_URL unset or unreachable"
                                                    : "cannot open sqlite store");
    return;
  }
  constexpr int kBurst = 2000;
  int64_t errors = 0;
  for (auto _ : state) {
    std::atomic<int> left{kBurst};
    std::atomic<int64_t> failed{0};
    std::promise<void> all;
    for (int i = 0; i < kBurst; ++i) {
      g_store->Create(Trans(g_next_gid.fetch_add(1)), [&](const Status& s) {
        if (!s.ok()) failed.fetch_add(1);
        if (left.fetch_sub(1) == 1) all.set_value();
      });
    }
    all.get_future().wait();
    errors += failed.load();
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
  state.counters["errors"] = static_cast<double>(errors);
  Close(state);
}

BENCHMARK(BM_BurstCreate)->ArgName("pg")->Arg(kSqlite)->Arg(kPostgres)->UseRealTime()->MinTime(3.0);

BENCHMARK(BM_ClosedLoopCreate)
    ->ArgName("pg")
    ->Arg(kSqlite)
    ->Arg(kPostgres)
    ->Threads(16)
    ->Threads(64)
    ->UseRealTime()
    ->MinTime(3.0);

}  // namespace
}  // namespace dtx::store

BENCHMARK_MAIN();
