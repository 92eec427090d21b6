// A small SQL layer for the TCC payment example (and the bank invariant test): one connection to
// SQLite or PostgreSQL behind one interface, statements with '?' placeholders (rewritten to $1, $2,
// ... for PostgreSQL), and a bounded connection pool. Business code is written once and runs on
// either database; the sub-transaction barrier (include/dtx/barrier.h) wraps it in one local
// transaction on the same connection.
//
//   auto pool = tcc_payment::ConnPool::Create("postgres://postgres@127.0.0.1:5432/db", "member",
//   8); auto conn = (*pool)->Acquire();                   // a lease, returned when it goes auto
//   barrier = dtx::BranchBarrier::FromRequest(request); dtx::Status s =
//   (*conn)->CallBarrier(*barrier, [&](tcc_payment::SqlConn& tx) {
//     return tx.Exec("UPDATE accounts SET frozen = frozen + ? WHERE member = ?", {amt,
//     m}).status();
//   });
//
// URLs: "sqlite:/path/to/file.db" (WAL, synchronous=FULL, 10 s busy timeout) or "postgres://..." /
// "postgresql://..." (any libpq URI). For PostgreSQL every connection runs in its own `schema`
// (search_path) and the barrier table is <schema>.barrier; for SQLite the barrier table is
// dtm_barrier in the same file (PROTOCOL.md §4.1).
//
// Thread-safety: a SqlConn is used by one thread at a time (the lease holder); the pool is
// thread-safe. How it fails: every call returns a dtx::Status; SQLite errors are kIoError except
// busy/locked (kTimeout, retryable); PostgreSQL errors are mapped by SQLSTATE class (connection,
// deadlock, serialization -> kUnavailable; lock timeout -> kTimeout; others kInternal). A
// connection that broke is dropped when its lease ends; the next Acquire opens a new one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "dtx/barrier.h"
#include "dtx/status.h"
#include "examples/common/sql_support.h"

namespace tcc_payment {

using dtx::Result;
using dtx::Status;

// A bound parameter or a column value. PostgreSQL integer columns (int2/int4/int8) come back as
// int64_t, everything else as text.
using Value = std::variant<std::nullptr_t, int64_t, std::string>;
using Row = std::vector<Value>;

int64_t AsInt(const Value& v);       // 0 unless an integer
std::string AsText(const Value& v);  // "" unless text

class SqlConn {
 public:
  virtual ~SqlConn() = default;

  // "sqlite" or "postgres".
  virtual std::string_view kind() const = 0;
  // One statement with '?' placeholders; returns its rows (none for INSERT/UPDATE/DELETE).
  virtual Result<std::vector<Row>> Query(const std::string& sql,
                                         const std::vector<Value>& params = {}) = 0;
  // One statement with '?' placeholders; returns the number of rows it changed.
  virtual Result<int64_t> Exec(const std::string& sql, const std::vector<Value>& params = {}) = 0;
  // Several statements separated by ';', without parameters (schema scripts).
  virtual Status ExecScript(const std::string& sql) = 0;
  // dtx::BranchBarrier::Call on this connection: `business` runs inside the barrier's local
  // transaction and gets this connection back.
  virtual Status CallBarrier(dtx::BranchBarrier& barrier,
                             const std::function<Status(SqlConn&)>& business) = 0;
  // Creates the barrier table if missing.
  virtual Status EnsureBarrierTable() = 0;
  // The barrier table's name (for dumps and resets).
  virtual std::string barrier_table() const = 0;
  // False once the connection is unusable (PostgreSQL connection lost).
  virtual bool healthy() const = 0;
};

// Opens one connection (see the header comment for `url`). `pg_schema` is a plain identifier
// ([a-z_][a-z0-9_]*); it is ignored for SQLite. The schema is not created here: call
// CreatePgSchema once first.
Result<std::unique_ptr<SqlConn>> OpenSql(const std::string& url, const std::string& pg_schema);
// CREATE SCHEMA IF NOT EXISTS on a fresh connection (PostgreSQL only; ok for SQLite).
Status CreatePgSchema(const std::string& url, const std::string& pg_schema, bool drop_first);

using dtx_examples::IsPostgresUrl;

// The shared pool (examples/common/sql_support.h) over this layer's connections.
class ConnPool : public dtx_examples::ConnPool<SqlConn> {
 public:
  // At most `max_connections` open connections; they are opened on demand.
  ConnPool(std::string url, std::string pg_schema, size_t max_connections);
};

}  // namespace tcc_payment
