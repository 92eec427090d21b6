// Helpers shared by the barrier adapters (barrier_sqlite.cc, barrier_pg.cc) and the algorithm
// (barrier.cc): validation of the table names that are spliced into SQL. Pure functions;
// thread-safe; failures are kInvalidArgument statuses.
#pragma once

#include <cstddef>
#include <string_view>

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

}  // namespace dtx::barrier_internal
