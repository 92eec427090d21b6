// OpenStore: turns a --store spec into a Store.
#include "store/store.h"

#include <string_view>

namespace dtx::store {

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
    return Status::InvalidArgument(
        "--store postgres:// is not supported yet; use sqlite:PATH (or memory: for tests)");
  }
  return Status::InvalidArgument(
      "unknown --store '" + spec +
      "': expected sqlite:PATH or memory: (postgres:// is not supported yet)");
}

}  // namespace dtx::store
