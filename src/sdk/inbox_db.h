// The inbox's database side (include/dtx/inbox.h): message_applied and the dead-letter table on
// the caller's SQLite or PostgreSQL connection. Private to src/sdk. Not thread-safe (one
// connection); every method returns a Status, never throws. Transient database states (busy,
// locked, connection lost) are kUnavailable / kTimeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dtx/inbox.h"

namespace dtx::inbox_internal {

class InboxDb {
 public:
  virtual ~InboxDb() = default;
  virtual Status EnsureTables() = 0;

  // The message's transaction. Begin fails with kInvalidArgument when the connection is inside a
  // transaction already.
  virtual Status Begin() = 0;
  virtual Status Commit() = 0;
  virtual void Rollback() = 0;
  // One savepoint per message inside the transaction (not nested).
  virtual Status Savepoint() = 0;
  virtual Status ReleaseSavepoint() = 0;
  virtual Status RollbackToSavepoint() = 0;

  // Inside the transaction: true when the row was inserted, false when it existed (a duplicate).
  virtual Result<bool> InsertApplied(const std::string& consumer,
                                     const std::string& message_id) = 0;
  // Inside the transaction: the dead letter (upsert: attempts and error replaced).
  virtual Status InsertDeadLetter(const std::string& consumer, const InboxMessage& m, int attempts,
                                  const std::string& error) = 0;
  virtual Status DeleteDeadLetter(const std::string& consumer, const std::string& message_id) = 0;
  virtual Status RecordDeadLetterFailure(const std::string& consumer, const std::string& message_id,
                                         const std::string& error) = 0;

  // Outside a transaction.
  virtual Result<std::vector<DeadLetter>> ListDeadLetters(const std::string& consumer,
                                                          size_t limit) = 0;
  virtual Result<int64_t> DeleteAppliedBefore(const std::string& consumer, int64_t before_unix_ms,
                                              size_t batch) = 0;
};

struct Tables {
  std::string applied;
  std::string dead;
};

// kInvalidArgument for a bad table name.
Result<std::unique_ptr<InboxDb>> OpenSqliteInboxDb(sqlite3* db, Tables tables);
Result<std::unique_ptr<InboxDb>> OpenPgInboxDb(PGconn* conn, Tables tables);

// Headers as stored in the dead-letter table (the outbox's JSON object form).
std::string EncodeHeaders(const std::vector<std::pair<std::string, std::string>>& headers);
std::vector<std::pair<std::string, std::string>> DecodeHeaders(const std::string& json);

int64_t NowUnixMs();

}  // namespace dtx::inbox_internal
