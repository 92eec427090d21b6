#include "store/postgres/postgres_store.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "store/internal.h"
#include "store/postgres/pg_conn.h"
#include "store/postgres/store_impl.h"

namespace dtx::store {
namespace pg_internal {

// ---------------------------------------------------------------------------------------------------
// Connections and migration.

Status PostgresStore::Prepare(PgConn& c, bool writer) const {
  const std::vector<Command> cmds = writer ? WriterPrepares() : ReaderPrepares();
  auto r = c.Run(cmds, IoDeadline());
  if (!r.ok()) return r.status();
  for (size_t i = 0; i < cmds.size(); ++i) {
    if (!pg::ResultOk((*r)[i].get())) {
      return pg::ErrorStatus((*r)[i].get(), "prepare " + cmds[i].name);
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<PgConn>> PostgresStore::Connect(bool writer, bool prepare) const {
  pg::ConnectOptions co;
  co.conninfo = o_.url;
  co.application_name =
      std::string(writer ? kPostgresWriterAppName : kPostgresReaderAppName) + o_.schema;
  co.session_sql = {
      // Durability: COMMIT returns only after the WAL is flushed (and, with synchronous standbys,
      // replicated), whatever the server's default.
      "SET synchronous_commit TO on",
      "SET search_path TO " + o_.schema,
      "SET statement_timeout TO " + std::to_string(o_.statement_timeout_ms),
      // A coordinator that vanished mid-transaction (network partition) must not hold row locks
      // until TCP notices: our transactions are never idle by design.
      "SET idle_in_transaction_session_timeout TO " + std::to_string(o_.io_timeout_ms),
      "SET TIME ZONE 'UTC'",
      // Every statement is prepared once and looks rows up by key (or walks the due index in its
      // ORDER BY): the generic plan is the right plan, and re-planning per execution would cost
      // more CPU than executing.
      "SET plan_cache_mode TO force_generic_plan",
  };
  auto conn =
      PgConn::Connect(co, pg::Clock::now() + std::chrono::milliseconds(o_.connect_timeout_ms));
  if (!conn.ok()) {
    return Status(conn.status().code(), display_ + ": " + conn.status().message());
  }
  if ((*conn)->server_version() < kMinServerVersion) {
    return Status::InvalidArgument("postgres " + display_ + ": server version " +
                                   std::to_string((*conn)->server_version()) +
                                   " is too old; dtx needs PostgreSQL 12 or newer");
  }
  if (prepare) {
    if (Status s = Prepare(**conn, writer); !s.ok()) return s;
  }
  return conn;
}

Result<std::unique_ptr<Store>> PostgresStore::Open(const PostgresOptions& options) {
  auto display = pg::DescribeConninfo(options.url);
  if (!display.ok()) return display.status();
  auto store = std::make_unique<PostgresStore>(options, std::move(display).value());
  PostgresStore* self = store.get();

  std::vector<std::unique_ptr<PgConn>> writers, readers;
  {
    auto first = self->Connect(/*writer=*/true, /*prepare=*/false);
    if (!first.ok()) return first.status();
    if (Status s = self->Migrate(**first); !s.ok()) return s;
    if (Status s = self->Prepare(**first, /*writer=*/true); !s.ok()) return s;
    writers.push_back(std::move(first).value());
  }
  for (int i = 1; i < options.writer_connections; ++i) {
    auto c = self->Connect(/*writer=*/true);
    if (!c.ok()) return c.status();
    writers.push_back(std::move(c).value());
  }
  for (int i = 0; i < options.reader_connections; ++i) {
    auto c = self->Connect(/*writer=*/false);
    if (!c.ok()) return c.status();
    readers.push_back(std::move(c).value());
  }
  self->connected_writers_.store(options.writer_connections);
  for (auto& c : writers) {
    self->writers_.emplace_back(
        [self, conn = std::move(c)]() mutable { self->WriterLoop(std::move(conn)); });
  }
  for (auto& c : readers) {
    self->readers_.emplace_back(
        [self, conn = std::move(c)]() mutable { self->ReaderLoop(std::move(conn)); });
  }
  for (const auto& t : self->writers_) self->thread_ids_.push_back(t.get_id());
  for (const auto& t : self->readers_) self->thread_ids_.push_back(t.get_id());
  return std::unique_ptr<Store>(std::move(store));
}

void PostgresStore::Close() {
  // Joining our own thread would deadlock: Close from a store callback is a programmer error.
  const auto self = std::this_thread::get_id();
  DTX_INVARIANT(std::find(thread_ids_.begin(), thread_ids_.end(), self) == thread_ids_.end(),
                "Store::Close called from a store callback");
  std::call_once(close_once_, [this] {
    {
      std::lock_guard lock(write_mu_);
      write_stopping_ = true;
    }
    {
      std::lock_guard lock(stop_mu_);
      stop_ = true;
    }
    write_cv_.notify_all();
    stop_cv_.notify_all();
    for (auto& t : writers_) {
      if (t.joinable()) t.join();
    }
    // A writer that could not connect may have left work behind when it gave up.
    FailQueuedWrites(Status::Unavailable("store closed before the write could be sent"));
    {
      std::lock_guard lock(read_mu_);
      read_stopping_ = true;
    }
    read_cv_.notify_all();
    for (auto& t : readers_) {
      if (t.joinable()) t.join();
    }
  });
}

}  // namespace pg_internal

namespace {

using pg_internal::PostgresStore;

bool ValidSchemaName(const std::string& s) {
  if (s.empty() || s.size() > 63 || s.starts_with("pg_")) return false;
  if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

Status ValidateOptions(const PostgresOptions& o) {
  auto bad = [](const std::string& m) { return Status::InvalidArgument("postgres store: " + m); };
  if (o.url.empty()) return bad("empty connection URL");
  if (!ValidSchemaName(o.schema)) {
    return bad(
        "schema must be 1..63 of [a-z0-9_], starting with a letter or '_' and not pg_, got '" +
        o.schema + "'");
  }
  if (o.writer_connections < 1 || o.writer_connections > 64) {
    return bad("writer_connections must be 1..64");
  }
  if (o.reader_connections < 1 || o.reader_connections > 64) {
    return bad("reader_connections must be 1..64");
  }
  if (o.max_batch_ops < 1 || o.max_batch_ops > 10000) return bad("max_batch_ops must be 1..10000");
  if (o.max_queued_writes < 1) return bad("max_queued_writes must be >= 1");
  if (o.max_queued_reads < 1) return bad("max_queued_reads must be >= 1");
  if (o.connect_timeout_ms < 1) return bad("connect_timeout_ms must be >= 1");
  if (o.statement_timeout_ms < 1) return bad("statement_timeout_ms must be >= 1");
  if (o.io_timeout_ms <= o.statement_timeout_ms) {
    return bad("io_timeout_ms must exceed statement_timeout_ms");
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Store>> OpenPostgresStore(const PostgresOptions& options) {
  if (Status s = ValidateOptions(options); !s.ok()) return s;
  auto store = PostgresStore::Open(options);
  if (!store.ok()) return store.status();
  spdlog::info("postgres store open: schema {} (version {}), {} writers, {} readers",
               options.schema, kPostgresSchemaVersion, options.writer_connections,
               options.reader_connections);
  return store;
}

}  // namespace dtx::store
