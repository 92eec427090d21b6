// A thin wrapper over the sqlite3 C API for the example services: one connection in WAL mode with
// synchronous=FULL, prepared statements with positional binding, and a transaction guard.
//
// Thread-safety: none. A service holds one Db and serializes every use with its own mutex.
// How it fails: every call returns a dtx::Status (kIoError with SQLite's message); nothing throws.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "dtx/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace order_saga {

using dtx::Result;
using dtx::Status;

// A bound parameter or a column value.
using Value = std::variant<std::nullptr_t, int64_t, std::string>;
using Row = std::vector<Value>;

int64_t AsInt(const Value& v);       // 0 unless an integer
std::string AsText(const Value& v);  // "" unless text

class Db {
 public:
  // Opens (creating if needed) `path`, sets WAL, synchronous=FULL and a busy timeout.
  static Result<std::unique_ptr<Db>> Open(const std::string& path);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Runs one or more statements without parameters (schema, PRAGMA, BEGIN/COMMIT).
  Status Exec(const std::string& sql);
  // Runs one statement with parameters; returns every row (empty for INSERT/UPDATE).
  Result<std::vector<Row>> Query(const std::string& sql, const std::vector<Value>& params = {});
  // Rows changed by the last INSERT/UPDATE/DELETE.
  int64_t Changes() const;

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  Status Error(const std::string& what) const;
  sqlite3* db_;
};

// BEGIN IMMEDIATE in the constructor; ROLLBACK in the destructor unless Commit() succeeded.
class Transaction {
 public:
  explicit Transaction(Db& db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  const Status& begin_status() const { return begin_; }
  Status Commit();

 private:
  Db& db_;
  Status begin_;
  bool open_ = false;
};

}  // namespace order_saga
