// The outbox as the relay sees it: claim pending rows, mark them published (or record a refusal,
// parking a row after N), wait for new rows, delete old published rows, re-queue parked ones.
// PostgreSQL (several relays on one outbox: FOR UPDATE SKIP LOCKED plus a per-key advisory lock,
// LISTEN/NOTIFY wake-up) and SQLite (one relay per file, polling). docs/outbox.md explains the
// guarantees.
//
// Thread-safety: one OutboxSource is one database connection (two on PostgreSQL: claims and
// LISTEN); use it from one thread. Several relay threads or processes each open their own.
//
// How it fails: Status values. A database that is down -> kUnavailable (retry later); a missing
// table -> kNotFound naming `--init`; a bad spec or table name -> kInvalidArgument.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace dtx::relay {

struct OutboxRow {
  int64_t id = 0;
  std::string message_id;
  std::string topic;
  std::string key;
  std::string payload;
  std::string headers;  // JSON object text, as stored
  int attempts = 0;
};

// What became of one claimed row after its publish.
struct RowOutcome {
  int64_t id = 0;
  enum Kind { kPublished, kRefused, kMalformed } kind = kPublished;
  std::string error;  // kRefused / kMalformed: why
};

class OutboxSource {
 public:
  virtual ~OutboxSource() = default;

  // Creates the table (--init) or checks that it exists (kNotFound with a hint otherwise).
  virtual Status Prepare(bool init) = 0;
  // Claims up to `max` pending rows in id order, skipping rows and keys another relay holds. On
  // PostgreSQL the claim is an open transaction holding row locks until Finish or Abandon.
  virtual Result<std::vector<OutboxRow>> Claim(size_t max) = 0;
  // Records the outcomes and ends the claim (commit). Rows not mentioned stay pending untouched
  // (e.g. their publish failed in transport). A published row is marked published, or deleted
  // when `delete_published`. A refusal increments attempts and parks the row at `max_attempts`; a
  // malformed row is parked at once.
  virtual Status Finish(const std::vector<RowOutcome>& outcomes, int max_attempts,
                        bool delete_published) = 0;
  // Worker `index` of `count` in one relay: its claims take only keys whose hash falls in its
  // share (rows with an empty key: any worker), so the workers of a relay do not skip each other's
  // keys. Other relays' claims are kept off by the row and key locks as always. SQLite: one worker.
  virtual void SetKeyShare(int count, int index) {
    (void)count;
    (void)index;
  }
  // Ends the claim without changes (rollback).
  virtual void Abandon() = 0;
  // Before waiting for rows, asks writers to wake this relay (PostgreSQL: takes the wake-up lock
  // that makes the insert trigger NOTIFY). kArmed: claim once more (a writer that committed before
  // the arm did not notify), then WaitForRows. kBusy: a writer is between its insert and its
  // commit, or another relay waits: look again soon. kPoll: no wake-up here (SQLite, or no LISTEN
  // connection now): WaitForRows polls.
  enum class Wakeup { kArmed, kBusy, kPoll };
  virtual Wakeup ArmWakeup() { return Wakeup::kPoll; }
  // Whether writers notify this relay now (armed, and the connection that holds the lock lives).
  virtual bool Armed() const { return false; }
  // Writers stop notifying (rows were found). Also ends with the connection.
  virtual void DisarmWakeup() {}
  // Blocks until new rows may be there (PostgreSQL NOTIFY: returns true) or `timeout` passed.
  virtual bool WaitForRows(std::chrono::milliseconds timeout) = 0;
  // Deletes up to `max` published rows older than `age`; returns how many.
  virtual Result<int64_t> DeletePublished(std::chrono::seconds age, size_t max) = 0;
  // Parked rows back to pending with attempts 0: all (ids empty) or the given ids; returns how
  // many.
  virtual Result<int64_t> Requeue(const std::vector<int64_t>& ids) = 0;
  // Row counts by state: pending, published, parked.
  virtual Result<std::vector<int64_t>> CountByState() = 0;
};

// spec: postgres://... (a libpq URL) or sqlite:PATH. Connects at once (kUnavailable when the
// database is unreachable). `exclusive` on SQLite takes the one-relay-per-file lock for the
// source's lifetime (kUnavailable "another dtx relay ..." when held); PostgreSQL ignores it.
Result<std::unique_ptr<OutboxSource>> OpenSource(std::string_view spec, std::string_view table,
                                                 bool exclusive);

}  // namespace dtx::relay
