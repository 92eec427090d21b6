// Table-name checks of the barrier adapters (sdk/barrier_internal.h). A file of its own because
// both libdtx and its PostgreSQL part (libdtx_pg) compile it in: the shared libraries export only
// the public API, so neither can borrow these from the other.
#include <string>

#include "sdk/barrier_internal.h"

namespace dtx {

namespace barrier_internal {

bool IsPlainIdentifier(std::string_view name, size_t max_bytes) {
  if (name.empty() || name.size() > max_bytes) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    bool digit = c >= '0' && c <= '9';
    if (!(alpha || (digit && i > 0))) return false;
  }
  return true;
}

Result<TableName> ParseTableName(std::string_view name, bool allow_schema, size_t max_part_bytes) {
  TableName parts;
  size_t dot = name.find('.');
  if (dot == std::string_view::npos) {
    parts.table = name;
  } else if (allow_schema) {
    parts.schema = name.substr(0, dot);
    parts.table = name.substr(dot + 1);
    if (!IsPlainIdentifier(parts.schema, max_part_bytes)) {
      return Status::InvalidArgument("barrier table name '" + std::string(name) +
                                     "': the schema must be an unquoted identifier of at most " +
                                     std::to_string(max_part_bytes) + " bytes");
    }
  }
  if (!IsPlainIdentifier(parts.table, max_part_bytes)) {
    return Status::InvalidArgument("barrier table name '" + std::string(name) + "' must be " +
                                   (allow_schema ? "[schema.]table" : "a table") +
                                   " of unquoted identifiers ([A-Za-z_][A-Za-z0-9_]*) of at most " +
                                   std::to_string(max_part_bytes) + " bytes");
  }
  return parts;
}

}  // namespace barrier_internal

}  // namespace dtx
