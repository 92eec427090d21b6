#include "examples/common/sql_support.h"

namespace dtx_examples {

bool IsPostgresUrl(std::string_view url) {
  return url.starts_with("postgres://") || url.starts_with("postgresql://");
}

bool IsPgIdentifier(std::string_view s) {
  if (s.empty() || s.size() > 50) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok = (c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

std::string PgNumbered(const std::string& sql) {
  std::string out;
  out.reserve(sql.size() + 8);
  int n = 0;
  for (char c : sql) {
    if (c == '?') {
      out += '$';
      out += std::to_string(++n);
    } else {
      out += c;
    }
  }
  return out;
}

std::string PgTrimmed(const char* text) {
  std::string s = text != nullptr ? text : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

dtx::Result<sqlite3*> OpenSqliteFile(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    sqlite3_close(raw);
    return dtx::Status::IoError("open " + path + ": " + msg);
  }
  return raw;
}

dtx::Result<PGconn*> ConnectPg(const std::string& url) {
  PGconn* conn = PQconnectdb(url.c_str());
  if (conn == nullptr) return dtx::Status::Unavailable("postgres: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string msg = PgTrimmed(PQerrorMessage(conn));
    PQfinish(conn);
    return dtx::Status::Unavailable("postgres: connect: " + msg);
  }
  return conn;
}

dtx::Status PgError(PGconn* conn, const PGresult* res, const std::string& what,
                    bool constraint_is_conflict) {
  std::string msg =
      what + ": " + PgTrimmed(res != nullptr ? PQresultErrorMessage(res) : PQerrorMessage(conn));
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  std::string_view code = state != nullptr ? state : "";
  if (constraint_is_conflict && code.starts_with("23")) return dtx::Status::Conflict(msg);
  if (res == nullptr || PQstatus(conn) == CONNECTION_BAD || code.empty() ||
      code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") ||
      code == "40001" || code == "40P01") {
    return dtx::Status::Unavailable(msg);
  }
  if (code == "55P03") return dtx::Status::Timeout(msg);
  return dtx::Status::Internal(msg + " [SQLSTATE " + std::string(code) + "]");
}

}  // namespace dtx_examples
