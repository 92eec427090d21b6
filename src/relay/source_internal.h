// Shared by the outbox sources (source_pg.cc, source_sqlite.cc, source.cc). Not for other callers.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "relay/source.h"

namespace dtx::relay {

inline std::string MissingTableMessage(std::string_view table) {
  return "the outbox table '" + std::string(table) +
         "' does not exist; create it with `dtx relay --init` (or the SQL of docs/outbox.md)";
}

inline void SleepFor(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }

Result<std::unique_ptr<OutboxSource>> OpenPgSource(std::string_view spec, std::string_view table);
Result<std::unique_ptr<OutboxSource>> OpenSqliteSource(std::string_view path,
                                                       std::string_view table, bool exclusive);

}  // namespace dtx::relay
