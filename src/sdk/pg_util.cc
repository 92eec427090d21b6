// libpq helpers of the SDK's PostgreSQL part (sdk/pg_util.h).
#include "sdk/pg_util.h"

#include <string>

namespace dtx::pg_util {

std::string TrimmedMessage(const char* text) {
  std::string s = text != nullptr ? text : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

Status PgError(PGconn* conn, const PGresult* res, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += TrimmedMessage(res != nullptr ? PQresultErrorMessage(res) : PQerrorMessage(conn));
  if (res == nullptr || PQstatus(conn) == CONNECTION_BAD) return Status::Unavailable(msg);
  const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  std::string_view code = state != nullptr ? state : "";
  if (code.empty()) return Status::Unavailable(msg);  // a client-side failure (lost connection)
  msg += " [SQLSTATE ";
  msg += code;
  msg += "]";
  if (code == "55P03" || code == "57014") return Status::Timeout(msg);  // lock_timeout, cancel
  if (code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") ||
      code == "40001" || code == "40P01") {
    return Status::Unavailable(msg);  // connection, resources, shutdown, serialization, deadlock
  }
  if (code.starts_with("58")) return Status::IoError(msg);
  return Status::Internal(msg);
}

std::string_view SqlState(const PGresult* res) {
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  return state != nullptr ? std::string_view(state) : std::string_view();
}

}  // namespace dtx::pg_util
