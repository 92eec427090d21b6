// OpenStore: turns a --store spec into a Store.
#include "store/store.h"

#include <string_view>
#include <vector>

namespace dtx::store {
namespace {

// Splits "schema=NAME" off the query string of a PostgreSQL URL (libpq rejects unknown URI
// parameters). Returns false if the parameter is given twice or empty.
bool TakeSchemaParam(std::string* url, std::string* schema) {
  const size_t q = url->find('?');
  if (q == std::string::npos) return true;
  std::string_view query = std::string_view(*url).substr(q + 1);
  std::string kept;
  bool found = false;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.starts_with("schema=")) {
      if (found || part.size() == 7) return false;
      *schema = std::string(part.substr(7));
      found = true;
      continue;
    }
    if (part.empty()) continue;
    if (!kept.empty()) kept += '&';
    kept += part;
  }
  url->resize(q);
  if (!kept.empty()) *url += "?" + kept;
  return true;
}

}  // namespace

Result<std::unique_ptr<Store>> OpenStore(const std::string& spec) {
  constexpr std::string_view kSqlite = "sqlite:";
  constexpr std::string_view kMemory = "memory:";
  std::string_view s = spec;
  if (s.starts_with(kSqlite)) {
    SqliteOptions options;
    options.path = std::string(s.substr(kSqlite.size()));
    if (options.path.empty()) {
      return Status::InvalidArgument(
          "--store sqlite:PATH needs a path, e.g. sqlite:dtx-data/dtx.db");
    }
    return OpenSqliteStore(options);
  }
  if (s == kMemory) return NewMemoryStore();
  if (s.starts_with("postgres://") || s.starts_with("postgresql://")) {
    PostgresOptions options;
    options.url = spec;
    if (!TakeSchemaParam(&options.url, &options.schema)) {
      return Status::InvalidArgument(
          "--store postgres://...: schema= must be given once, non-empty");
    }
    return OpenPostgresStore(options);
  }
  return Status::InvalidArgument(
      "unknown --store '" + spec +
      "': expected sqlite:PATH, memory: or postgres://user:pass@host:port/db");
}

}  // namespace dtx::store
