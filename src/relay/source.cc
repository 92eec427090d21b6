// OpenSource: the spec's scheme picks the outbox source (source.h).
#include "dtx/outbox.h"
#include "relay/source_internal.h"

namespace dtx::relay {

Result<std::unique_ptr<OutboxSource>> OpenSource(std::string_view spec, std::string_view table,
                                                 bool exclusive) {
  const bool pg = spec.starts_with("postgres://") || spec.starts_with("postgresql://");
  const bool sqlite = spec.starts_with("sqlite:");
  if (!pg && !sqlite) {
    return Status::InvalidArgument("--source must be postgres://... or sqlite:PATH, not '" +
                                   std::string(spec) + "'");
  }
  Status valid = Outbox({.table = std::string(table)})
                     .ValidTable(pg ? OutboxDialect::kPostgres : OutboxDialect::kSqlite);
  if (!valid.ok()) return valid;
  if (pg) return OpenPgSource(spec, table);
  return OpenSqliteSource(spec.substr(7), table, exclusive);
}

}  // namespace dtx::relay
