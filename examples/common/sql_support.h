// What the examples' SQL layers (examples/msg_ebay/sql.h: text parameters; examples/tcc_payment/
// sql_conn.h: typed values and the TCC barrier) share: database URLs, opening a SQLite file or a
// PostgreSQL connection, '?' -> $n placeholders, PostgreSQL errors as dtx::Status, and a bounded
// connection pool over either layer's connection type.
//
// Thread-safety: the functions are; ConnPool is thread-safe, a leased connection is used by one
// thread at a time. How it fails: dtx::Status values (see PgError for the PostgreSQL mapping).
#pragma once

#include <libpq-fe.h>
#include <sqlite3.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dtx/status.h"

namespace dtx_examples {

// "postgres://..." or "postgresql://...".
bool IsPostgresUrl(std::string_view url);
// A plain identifier [a-z_][a-z0-9_]* of at most 50 characters (a PostgreSQL schema name).
bool IsPgIdentifier(std::string_view s);
// '?' -> $1, $2, ... (the examples' statements have no '?' inside literals).
std::string PgNumbered(const std::string& sql);
// A libpq message without its trailing newline/spaces.
std::string PgTrimmed(const char* text);

// sqlite3_open_v2 (read-write, create, no mutex); the error is kIoError "open PATH: ...".
dtx::Result<sqlite3*> OpenSqliteFile(const std::string& path);
// PQconnectdb; the error is kUnavailable "postgres: connect: ...".
dtx::Result<PGconn*> ConnectPg(const std::string& url);

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

// A failed PostgreSQL call as a Status "WHAT: message": connection trouble, deadlock and
// serialization failures kUnavailable, lock timeouts kTimeout, others kInternal; an integrity
// constraint violation (class 23) is kConflict when `constraint_is_conflict`.
dtx::Status PgError(PGconn* conn, const PGresult* res, const std::string& what,
                    bool constraint_is_conflict);

// At most `max_connections` open connections of type Conn (which has `bool healthy() const`),
// opened on demand by `open(url, pg_schema)`. `on_release` (optional) runs on a connection when its
// lease ends; an unhealthy connection is dropped then and the next Acquire opens a new one.
template <class Conn>
class ConnPool {
 public:
  using Opener =
      std::function<dtx::Result<std::unique_ptr<Conn>>(const std::string&, const std::string&)>;

  ConnPool(Opener open, std::string url, std::string pg_schema, size_t max_connections,
           std::function<void(Conn&)> on_release = {})
      : open_fn_(std::move(open)),
        on_release_(std::move(on_release)),
        url_(std::move(url)),
        pg_schema_(std::move(pg_schema)),
        max_(max_connections == 0 ? 1 : max_connections) {}
  ~ConnPool() = default;
  ConnPool(const ConnPool&) = delete;
  ConnPool& operator=(const ConnPool&) = delete;

  class Lease {
   public:
    Lease(ConnPool* pool, std::unique_ptr<Conn> conn) : pool_(pool), conn_(std::move(conn)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (pool_ != nullptr && conn_ != nullptr) pool_->Release(std::move(conn_));
    }
    Conn* operator->() const { return conn_.get(); }
    Conn& operator*() const { return *conn_; }

   private:
    ConnPool* pool_;
    std::unique_ptr<Conn> conn_;
  };

  // An idle connection, a new one under the limit, or waits up to `wait` for one (kUnavailable
  // after that; a failed open returns its error).
  dtx::Result<Lease> Acquire(std::chrono::milliseconds wait = std::chrono::seconds(10)) {
    std::unique_lock lock(mu_);
    const auto deadline = std::chrono::steady_clock::now() + wait;
    for (;;) {
      if (!idle_.empty()) {
        std::unique_ptr<Conn> conn = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this, std::move(conn));
      }
      if (open_ < max_) {
        ++open_;
        lock.unlock();
        auto conn = open_fn_(url_, pg_schema_);
        if (!conn.ok()) {
          lock.lock();
          --open_;
          cv_.notify_one();
          return conn.status();
        }
        return Lease(this, std::move(*conn));
      }
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
          open_ >= max_) {
        return dtx::Status::Unavailable("all " + std::to_string(max_) +
                                        " database connections busy");
      }
    }
  }

  const std::string& url() const { return url_; }
  const std::string& pg_schema() const { return pg_schema_; }

 private:
  void Release(std::unique_ptr<Conn> conn) {
    std::lock_guard lock(mu_);
    if (on_release_) on_release_(*conn);
    if (conn->healthy()) {
      idle_.push_back(std::move(conn));
    } else {
      --open_;  // dropped; the next Acquire opens a new one
    }
    cv_.notify_one();
  }

  const Opener open_fn_;
  const std::function<void(Conn&)> on_release_;
  const std::string url_;
  const std::string pg_schema_;
  const size_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> idle_;
  size_t open_ = 0;
};

}  // namespace dtx_examples
