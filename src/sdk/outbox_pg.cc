// The PostgreSQL half of dtx::Outbox (include/dtx/outbox.h): EnsureTable and Write on the caller's
// libpq connection. Part of libdtx_pg (dtx::pg), so that libdtx itself needs no libpq.
#include <libpq-fe.h>

#include <string>

#include "dtx/outbox.h"
#include "sdk/pg_util.h"

namespace dtx {

Status Outbox::EnsureTable(PGconn* conn) const {
  Result<std::string> sql = SchemaSql(OutboxDialect::kPostgres);
  if (!sql.ok()) return sql.status();
  if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
    return Status::InvalidArgument("outbox: EnsureTable needs a connection outside a transaction");
  }
  // A multi-statement simple query runs as one transaction; no NOTICE for each "already exists".
  // The transaction-level advisory lock serializes concurrent EnsureTable calls on one table
  // (relays started together with --init, applications at start-up): run at once, their
  // `if not exists` / `or replace` statements race on the catalogs (duplicate key in pg_type, or
  // a deadlock between replacing the trigger function and creating the trigger).
  const std::string lock_key = "dtx-outbox-init:" + options_.table;
  char* lit = PQescapeLiteral(conn, lock_key.data(), lock_key.size());
  if (lit == nullptr) return pg_util::PgError(conn, nullptr, "outbox: create table");
  const std::string script =
      "set local client_min_messages = warning;\nselect "
      "pg_advisory_xact_lock(hashtextextended(" +
      std::string(lit) + ", 0));\n" + sql.value();
  PQfreemem(lit);
  pg_util::PgResult res(PQexec(conn, script.c_str()));
  if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    return pg_util::PgError(conn, res.get(), "outbox: create table");
  }
  return Status::Ok();
}

Result<std::string> Outbox::Write(PGconn* conn, const OutboxMessage& m) const {
  if (Status s = ValidTable(OutboxDialect::kPostgres); !s.ok()) return s;
  if (Status s = ValidateOutboxMessage(m); !s.ok()) return s;
  if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
    return Status::InvalidArgument(
        "outbox: Write needs the caller's open transaction (BEGIN first, not aborted): a row "
        "written in autocommit would commit without the business data");
  }
  const std::string id = m.message_id.empty() ? NewOutboxMessageId() : m.message_id;
  const std::string headers = EncodeOutboxHeaders(m.headers);
  const std::string sql = "insert into " + options_.table +
                          " (message_id, topic, msg_key, payload, headers) values ($1,$2,$3,$4,$5)";
  const char* params[] = {id.c_str(), m.topic.c_str(), m.key.c_str(), m.payload.c_str(),
                          headers.c_str()};
  pg_util::PgResult res(PQexecParams(conn, sql.c_str(), 5, nullptr, params, nullptr, nullptr, 0));
  if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    return pg_util::PgError(conn, res.get(), "outbox: insert");
  }
  return id;
}

}  // namespace dtx
