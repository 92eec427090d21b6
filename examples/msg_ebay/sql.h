// A small SQL layer for the message examples (msg_ebay, local_message): one connection to SQLite or
// PostgreSQL behind one interface, text parameters with '?' placeholders (rewritten to $1, $2, ...
// for PostgreSQL), the connection's barrier adapter for dtx::Msg::DoAndSubmit and
// dtx::QueryPrepared, and a pool that gives each handler thread its own connection.
//
//   auto pool = msg_examples::ConnPool("sqlite:/tmp/trade.db", "trade");
//   auto conn = pool.Acquire();                              // a lease, returned when it goes
//   auto rows = (*conn)->Query("select amount from t where xid = ?", {"T1"});
//
// URLs: "sqlite:/path/file.db" (WAL, synchronous=FULL, 10 s busy timeout) or "postgres://..." /
// "postgresql://..." (any libpq URI). On PostgreSQL every connection works in its own schema
// (search_path) and the barrier table is <schema>.barrier; on SQLite the barrier table is
// dtm_barrier in the same file (PROTOCOL.md §4.1). Parameters are bound as text; both databases
// convert them to the column's type ('30' into an integer column is 30).
//
// Thread-safety: a SqlConn is used by one thread at a time (the lease holder); ConnPool is
// thread-safe. How it fails: every call returns a dtx::Status: a constraint violation is kConflict
// (a business refusal), SQLite busy/locked and PostgreSQL lock timeouts are kTimeout, lost
// PostgreSQL connections and serialization failures kUnavailable, other errors kIoError/kInternal.
// A broken connection is dropped when its lease ends.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "dtx/barrier.h"
#include "dtx/status.h"
#include "examples/common/sql_support.h"

namespace msg_examples {

using dtx::Result;
using dtx::Status;
using Row = std::vector<std::string>;  // NULL reads as ""

using dtx_examples::IsPostgresUrl;

class SqlConn {
 public:
  virtual ~SqlConn() = default;
  // "sqlite" or "postgres".
  virtual std::string_view kind() const = 0;
  virtual Result<std::vector<Row>> Query(const std::string& sql,
                                         const std::vector<std::string>& params = {}) = 0;
  // Returns the number of rows changed.
  virtual Result<int64_t> Exec(const std::string& sql,
                               const std::vector<std::string>& params = {}) = 0;
  // Several statements separated by ';', no parameters (schema scripts).
  virtual Status Script(const std::string& sql) = 0;
  // A local transaction (BEGIN IMMEDIATE on SQLite, so the write lock is taken at once).
  virtual Status Begin() = 0;
  virtual Status Commit() = 0;
  virtual void Rollback() = 0;
  // The barrier adapter on this connection (for DoAndSubmit and QueryPrepared).
  virtual dtx::BarrierDb& barrier() = 0;
  virtual Status EnsureBarrierTable() = 0;
  virtual std::string barrier_table() const = 0;
  // False once the connection is unusable.
  virtual bool healthy() const = 0;

  // Begin, `body`, then commit (body ok) or roll back (body error; its status is returned).
  Status InTransaction(const std::function<Status()>& body);
};

// Opens one connection; `pg_schema` (a plain identifier) must exist (CreatePgSchema).
Result<std::unique_ptr<SqlConn>> OpenSql(const std::string& url, const std::string& pg_schema);
// CREATE SCHEMA IF NOT EXISTS (after DROP ... CASCADE when `drop_first`); a no-op for SQLite.
Status CreatePgSchema(const std::string& url, const std::string& pg_schema, bool drop_first);

// The shared pool (examples/common/sql_support.h) over this layer's connections.
class ConnPool : public dtx_examples::ConnPool<SqlConn> {
 public:
  // At most `max_connections` open connections; they are opened on demand.
  ConnPool(std::string url, std::string pg_schema, size_t max_connections = 16);
};

}  // namespace msg_examples
