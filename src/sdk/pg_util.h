// libpq helpers shared by the SDK's PostgreSQL part (barrier_pg.cc, xa_pg.cc): an owning PGresult
// and the mapping of a failed command to a Status by its SQLSTATE class (retryable or not).
// Stateless and thread-safe; each connection is used by one thread at a time.
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <string>
#include <string_view>

#include "util/status.h"

namespace dtx::pg_util {

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, ResultDeleter>;

// A libpq message without its trailing newline/spaces.
std::string TrimmedMessage(const char* text);

// 55P03/57014 (lock_timeout, cancel) -> kTimeout; connection, resources, shutdown, serialization
// and deadlock -> kUnavailable; 58xxx -> kIoError; anything else -> kInternal. The message is
// "<what>: <server message> [SQLSTATE xxxxx]".
Status PgError(PGconn* conn, const PGresult* res, std::string_view what);

// The SQLSTATE of a failed result, "" when there is none.
std::string_view SqlState(const PGresult* res);

}  // namespace dtx::pg_util
