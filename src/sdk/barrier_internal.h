// Helpers shared by the barrier adapters (barrier_sqlite.cc, barrier_pg.cc) and the algorithm
// (barrier.cc): validation of the table names that are spliced into SQL. Pure functions;
// thread-safe; failures are kInvalidArgument statuses.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <thread>

#include "dtx/barrier.h"
#include "util/status.h"

namespace dtx::barrier_internal {

// [A-Za-z_][A-Za-z0-9_]*, 1..max_bytes bytes: safe to splice into SQL unquoted.
bool IsPlainIdentifier(std::string_view name, size_t max_bytes);

// The parts of a possibly schema-qualified table name.
struct TableName {
  std::string_view schema;  // empty when unqualified
  std::string_view table;
};

// Splits and checks `name`: one identifier, or `schema.table` when `allow_schema`. Each part at
// most `max_part_bytes`. kInvalidArgument otherwise.
Result<TableName> ParseTableName(std::string_view name, bool allow_schema, size_t max_part_bytes);

// CleanBarrierTable's loop over an adapter's DeleteBefore: batches until one is short, an error,
// or options.max_batches; sleeps options.pause between batches.
inline Result<int64_t> CleanInBatches(
    const std::function<Result<int64_t>(std::chrono::system_clock::time_point, int)>& batch,
    const BarrierCleanupOptions& options) {
  if (options.max_batches < 1) {
    return Status::InvalidArgument("barrier cleanup: max_batches must be >= 1");
  }
  int64_t total = 0;
  for (int i = 0; i < options.max_batches; ++i) {
    if (i > 0 && options.pause.count() > 0) std::this_thread::sleep_for(options.pause);
    Result<int64_t> n = batch(options.horizon, options.batch_rows);
    if (!n.ok()) return n.status();
    total += *n;
    if (*n < options.batch_rows) break;
  }
  return total;
}

inline Status ValidateCleanupBatch(int limit) {
  if (limit < 1 || limit > kMaxBarrierCleanupBatch) {
    return Status::InvalidArgument("barrier cleanup: batch must be 1.." +
                                   std::to_string(kMaxBarrierCleanupBatch));
  }
  return Status::Ok();
}

}  // namespace dtx::barrier_internal
