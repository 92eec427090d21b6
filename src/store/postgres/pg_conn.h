// PgConn: one libpq connection driven in non-blocking pipeline mode, with a deadline on every round
// trip. The building block of the PostgreSQL store: its writers, readers and schema migration each
// send a list of Commands as one pipeline (one round trip, however many statements) and get one
// result per command back.
//
// Thread-safety: none. A PgConn is used by one thread at a time (the store gives each connection to
// one thread); Params and Command are plain values.
//
// Failure: a lost connection, a server that does not answer before the deadline, or a libpq error
// while sending makes the connection broken() for good and the call returns kUnavailable; the owner
// drops it and connects again. An error of one statement is not a failure of the call: it comes
// back as that command's result (PGRES_FATAL_ERROR; the commands after it in the same pipeline come
// back as PGRES_PIPELINE_ABORTED) and ErrorStatus() turns it into a Status.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace dtx::store::pg {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

struct ResultDeleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, ResultDeleter>;

// The parameters of one statement, all sent in text format. PostgreSQL text cannot hold a NUL byte
// (libpq would silently cut the value there), so a value containing one marks the Params invalid:
// check nul_free() before sending.
class Params {
 public:
  Params& Text(std::string v);
  Params& Int(int64_t v);
  Params& Null();
  Params& OptText(const std::optional<std::string>& v) { return v ? Text(*v) : Null(); }
  Params& OptInt(const std::optional<int64_t>& v) { return v ? Int(*v) : Null(); }

  int size() const { return static_cast<int>(values_.size()); }
  bool nul_free() const { return nul_free_; }
  // Pointers into the values, valid until the next change; nullptr for SQL NULL.
  const char* const* pointers() const;

 private:
  std::vector<std::string> values_;
  std::vector<bool> null_;
  mutable std::vector<const char*> pointers_;
  bool nul_free_ = true;
};

// Builds the text form of an array parameter ({"a","b",NULL}) for $n::text[], ::int8[] or
// ::bytea[]: elements are quoted and escaped, bytea elements are hex (\x...).
class ArrayBuilder {
 public:
  ArrayBuilder() { s_ = "{"; }
  ArrayBuilder& Text(std::string_view v);
  ArrayBuilder& Bytea(std::string_view bytes);
  ArrayBuilder& Int(int64_t v);
  ArrayBuilder& Null();
  ArrayBuilder& OptText(const std::optional<std::string>& v) { return v ? Text(*v) : Null(); }
  ArrayBuilder& OptInt(const std::optional<int64_t>& v) { return v ? Int(*v) : Null(); }
  std::string Finish() &&;

 private:
  void Separator();
  std::string s_;
  bool empty_ = true;
};

// One entry of a pipeline.
struct Command {
  enum class Kind : unsigned char { kExecPrepared, kPrepare, kExecSql };
  Kind kind = Kind::kExecSql;
  std::string name;                // statement name (kExecPrepared, kPrepare)
  std::string sql;                 // kPrepare, kExecSql
  const Params* params = nullptr;  // kExecPrepared, kExecSql; must outlive Run(); null = none

  static Command Exec(std::string name, const Params* params = nullptr) {
    return {Kind::kExecPrepared, std::move(name), {}, params};
  }
  static Command Prepare(std::string name, std::string sql) {
    return {Kind::kPrepare, std::move(name), std::move(sql), nullptr};
  }
  static Command Sql(std::string sql, const Params* params = nullptr) {
    return {Kind::kExecSql, {}, std::move(sql), params};
  }
};

struct ConnectOptions {
  std::string conninfo;  // URI or key=value string
  std::string application_name;
  std::vector<std::string> session_sql;  // run once after connecting (SET ...)
};

class PgConn {
 public:
  // Connects without blocking past `deadline`, switches to non-blocking mode and runs session_sql.
  // kUnavailable if the server cannot be reached or refuses the session.
  static Result<std::unique_ptr<PgConn>> Connect(const ConnectOptions& options, Deadline deadline);
  ~PgConn();
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;

  // Sends every command as one pipeline and waits (until `deadline`) for all their results. Rows
  // come back in binary format. kUnavailable (and broken() from then on) if the connection is lost
  // or the deadline passes; then the outcome of what was sent is unknown.
  Result<std::vector<PgResult>> Run(std::span<const Command> commands, Deadline deadline);

  // Notices, without blocking, a connection that the server closed while it was idle (e.g.
  // pg_terminate_backend, a server restart). Returns false if the connection is broken.
  bool CheckIdle();

  bool broken() const { return broken_; }
  // Gives the connection up (e.g. it reached a read-only standby): the owner connects again.
  void Discard() { broken_ = true; }
  int backend_pid() const { return PQbackendPID(conn_); }
  int server_version() const { return PQserverVersion(conn_); }  // e.g. 150018

  // Names of the statements prepared on this connection (by the owner, after a successful Run).
  bool IsPrepared(const std::string& name) const { return prepared_.contains(name); }
  void MarkPrepared(std::string name) { prepared_.insert(std::move(name)); }

 private:
  explicit PgConn(PGconn* conn) : conn_(conn) {}
  // Marks the connection broken and returns the kUnavailable describing why.
  Status Break(std::string_view what);

  PGconn* conn_;
  bool broken_ = false;
  std::set<std::string> prepared_;
};

// The Status of a failed command's result (PGRES_FATAL_ERROR, PGRES_PIPELINE_ABORTED, or any status
// other than PGRES_COMMAND_OK/PGRES_TUPLES_OK), classified by SQLSTATE: unique violation ->
// kAlreadyExists; bad data (class 22) -> kInvalidArgument; serialization failure, deadlock, lock or
// statement timeout, connection errors, admin shutdown, read-only transaction (a standby),
// too many connections, out of memory -> kUnavailable; disk full, I/O and corruption (53100, 58,
// XX) -> kIoError; anything else (a bug: syntax, undefined table) -> kInternal.
Status ErrorStatus(const PGresult* result, std::string_view what);

// True for a command result that succeeded.
bool ResultOk(const PGresult* result);

// The SQLSTATE of a result ("" if none).
std::string_view SqlState(const PGresult* result);

// Binary-format column readers. Int accepts int2/int4/int8 (2, 4 or 8 bytes); a NULL reads as 0/"".
int64_t GetInt(const PGresult* r, int row, int col);
bool GetBool(const PGresult* r, int row, int col);
std::string GetBytes(const PGresult* r, int row, int col);  // text and bytea: the raw bytes
inline bool IsNull(const PGresult* r, int row, int col) { return PQgetisnull(r, row, col) != 0; }

// user@host:port/db of a conninfo, without the password, for messages; or the parse error.
Result<std::string> DescribeConninfo(const std::string& conninfo);

}  // namespace dtx::store::pg
