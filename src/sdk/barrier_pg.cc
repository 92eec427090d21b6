// The PostgreSQL adapter of the barrier (PROTOCOL.md §4.1-4.2): BEGIN with a local lock_timeout,
// insert ... on conflict on constraint uniq_barrier do nothing with the command tag's row count,
// and the §4.1 script. Runs on the caller's libpq connection with the synchronous API.
#include "dtx/barrier_pg.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "dtx/barrier.h"
#include "sdk/barrier_internal.h"
#include "sdk/pg_util.h"

namespace dtx {
namespace {

using pg_util::PgError;
using pg_util::PgResult;
using pg_util::TrimmedMessage;

// 63 is PostgreSQL's identifier limit; the sequence name appends "_seq".
constexpr size_t kMaxIdentifierBytes = 59;

}  // namespace

PgDb::PgDb(PGconn* conn, PgBarrierOptions options) : conn_(conn), options_(std::move(options)) {
  DTX_ASSERT(conn_ != nullptr);
  Result<barrier_internal::TableName> name =
      barrier_internal::ParseTableName(options_.table, /*allow_schema=*/true, kMaxIdentifierBytes);
  if (!name.ok()) usable_ = name.status();
}

bool PgDb::InTransaction() const {
  PGTransactionStatusType s = PQtransactionStatus(conn_);
  return s == PQTRANS_INTRANS || s == PQTRANS_INERROR || s == PQTRANS_ACTIVE;
}

Status PgDb::Exec(const std::string& sql, std::string_view what) {
  PgResult res(PQexec(conn_, sql.c_str()));
  ExecStatusType st = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return PgError(conn_, res.get(), what);
  return Status::Ok();
}

Status PgDb::Begin() {
  if (!usable_.ok()) return usable_;
  switch (PQtransactionStatus(conn_)) {
    case PQTRANS_IDLE:
      break;
    case PQTRANS_UNKNOWN:
      return Status::Unavailable("barrier: the PostgreSQL connection is broken: " +
                                 TrimmedMessage(PQerrorMessage(conn_)));
    default:
      return Status::InvalidArgument(
          "barrier: the PostgreSQL connection is already inside a transaction or busy; the "
          "barrier must begin and end its own");
  }
  if (Status s = Exec("begin", "barrier: BEGIN"); !s.ok()) return s;
  if (options_.lock_timeout.count() > 0) {
    Status s =
        Exec("set local lock_timeout = '" + std::to_string(options_.lock_timeout.count()) + "ms'",
             "barrier: SET LOCAL lock_timeout");
    if (!s.ok()) {
      Rollback();
      return s;
    }
  }
  return Status::Ok();
}

Result<int> PgDb::InsertIgnore(const BarrierRow& row) {
  if (!usable_.ok()) return usable_;
  if (Status s = ValidateBarrierRow(row); !s.ok()) return s;
  // Outside a transaction: a single-statement transaction of its own (autocommit semantics) so
  // that lock_timeout bounds the wait for a transaction holding the key.
  const bool own_transaction = !InTransaction() && options_.lock_timeout.count() > 0;
  if (own_transaction) {
    if (Status s = Begin(); !s.ok()) return s;
  }
  const std::string sql = "insert into " + options_.table +
                          "(trans_type, gid, branch_id, op, barrier_id, reason) "
                          "values($1,$2,$3,$4,$5,$6) on conflict on constraint uniq_barrier "
                          "do nothing";
  // Text parameters must be NUL-terminated; validation rejected embedded NULs.
  const std::string values[] = {std::string(row.trans_type), std::string(row.gid),
                                std::string(row.branch_id),  std::string(row.op),
                                std::string(row.barrier_id), std::string(row.reason)};
  const char* params[6];
  for (int i = 0; i < 6; ++i) params[i] = values[i].c_str();
  PgResult res(PQexecParams(conn_, sql.c_str(), 6, nullptr, params, nullptr, nullptr, 0));
  if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    Status s = PgError(conn_, res.get(), "barrier: insert");
    if (own_transaction) Rollback();
    return s;
  }
  const char* tuples = PQcmdTuples(res.get());
  int affected = -1;
  if (std::strcmp(tuples, "0") == 0) affected = 0;
  if (std::strcmp(tuples, "1") == 0) affected = 1;
  if (affected < 0) {
    if (own_transaction) Rollback();
    return Status::Internal(std::string("barrier: insert reported '") + PQcmdStatus(res.get()) +
                            "'");
  }
  if (own_transaction) {
    if (Status s = Commit(); !s.ok()) return s;
  }
  return affected;
}

Result<std::string> PgDb::SelectReason(std::string_view gid, std::string_view branch_id,
                                       std::string_view op, std::string_view barrier_id) {
  if (!usable_.ok()) return usable_;
  const std::string sql = "select reason from " + options_.table +
                          " where gid=$1 and branch_id=$2 and op=$3 and barrier_id=$4";
  const std::string values[] = {std::string(gid), std::string(branch_id), std::string(op),
                                std::string(barrier_id)};
  for (const std::string& v : values) {
    if (v.find('\0') != std::string::npos) {
      return Status::InvalidArgument("barrier: select reason: a value contains a NUL byte");
    }
  }
  const char* params[4];
  for (int i = 0; i < 4; ++i) params[i] = values[i].c_str();
  PgResult res(PQexecParams(conn_, sql.c_str(), 4, nullptr, params, nullptr, nullptr, 0));
  if (!res || PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
    return PgError(conn_, res.get(), "barrier: select reason");
  }
  if (PQntuples(res.get()) == 0) return Status::NotFound("barrier: no row");
  return std::string(PQgetvalue(res.get(), 0, 0),
                     static_cast<size_t>(PQgetlength(res.get(), 0, 0)));
}

Status PgDb::Commit() {
  if (!usable_.ok()) return usable_;
  switch (PQtransactionStatus(conn_)) {
    case PQTRANS_INTRANS:
      break;
    case PQTRANS_INERROR:
      Rollback();
      return Status::Internal(
          "barrier: a statement in the transaction failed (the business code returned ok anyway); "
          "rolled back");
    case PQTRANS_IDLE:
      return Status::Internal(
          "barrier: the transaction was ended before Call could commit it (did the business code "
          "COMMIT or ROLLBACK?)");
    default:
      return Status::Unavailable("barrier: the PostgreSQL connection is broken or busy: " +
                                 TrimmedMessage(PQerrorMessage(conn_)));
  }
  PgResult res(PQexec(conn_, "commit"));
  if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    // The outcome may be unknown (connection lost during COMMIT): a retry of the whole call is
    // safe, since the barrier row makes the retry a duplicate if the commit did happen.
    Status s = PgError(conn_, res.get(), "barrier: COMMIT");
    Rollback();
    return s;
  }
  // COMMIT of a transaction that could not commit answers the tag ROLLBACK.
  if (std::strcmp(PQcmdStatus(res.get()), "COMMIT") != 0) {
    return Status::Internal(std::string("barrier: COMMIT answered '") + PQcmdStatus(res.get()) +
                            "'; nothing was committed");
  }
  return Status::Ok();
}

void PgDb::Rollback() {
  PGTransactionStatusType s = PQtransactionStatus(conn_);
  if (s == PQTRANS_INTRANS || s == PQTRANS_INERROR) {
    PgResult res(PQexec(conn_, "rollback"));
  }
}

Status PgDb::EnsureTable() {
  if (!usable_.ok()) return usable_;
  if (PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    return Status::InvalidArgument(
        "EnsureBarrierTable: the connection is inside a transaction or broken");
  }
  Result<barrier_internal::TableName> name =
      barrier_internal::ParseTableName(options_.table, /*allow_schema=*/true, kMaxIdentifierBytes);
  if (!name.ok()) return name.status();
  const std::string& t = options_.table;
  const std::string seq = t + "_seq";
  std::string sql = "begin;\nset local client_min_messages = warning;\n";  // no "exists" notices
  if (!name->schema.empty())
    sql += "create schema if not exists " + std::string(name->schema) + ";\n";
  sql += "create sequence if not exists " + seq + ";\n";
  sql += "create table if not exists " + t +
         "(\n"
         "  id bigint NOT NULL DEFAULT nextval('" +
         seq +
         "'),\n"
         "  trans_type varchar(45) default '', gid varchar(128) default '',"
         " branch_id varchar(128) default '',\n"
         "  op varchar(45) default '', barrier_id varchar(45) default '',"
         " reason varchar(45) default '',\n"
         "  create_time timestamp(0) with time zone DEFAULT now(),"
         " update_time timestamp(0) with time zone DEFAULT now(),\n"
         "  PRIMARY KEY(id),\n"
         "  CONSTRAINT uniq_barrier unique(gid, branch_id, op, barrier_id));\n"
         "commit;";
  Status s = Exec(sql, "EnsureBarrierTable");
  if (!s.ok()) Rollback();
  return s;
}

Result<int64_t> PgDb::DeleteBefore(std::chrono::system_clock::time_point horizon, int limit) {
  if (!usable_.ok()) return usable_;
  if (Status s = barrier_internal::ValidateCleanupBatch(limit); !s.ok()) return s;
  if (PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    return Status::InvalidArgument(
        "barrier cleanup: the connection is inside a transaction or broken");
  }
  // A single statement: its own short transaction. SKIP LOCKED leaves rows that a running
  // handler holds (they are new anyway) and lets several cleaners run at once.
  const std::string sql = "delete from " + options_.table + " where id in (select id from " +
                          options_.table +
                          " where create_time < to_timestamp($1::double precision / 1000.0) "
                          "order by id limit $2 for update skip locked)";
  const int64_t ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(horizon.time_since_epoch()).count();
  const std::string values[] = {std::to_string(ms), std::to_string(limit)};
  const char* params[] = {values[0].c_str(), values[1].c_str()};
  PgResult res(PQexecParams(conn_, sql.c_str(), 2, nullptr, params, nullptr, nullptr, 0));
  if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    return PgError(conn_, res.get(), "barrier: cleanup");
  }
  return static_cast<int64_t>(std::strtoll(PQcmdTuples(res.get()), nullptr, 10));
}

Result<int64_t> CleanBarrierTable(PgDb& db, const BarrierCleanupOptions& options) {
  return barrier_internal::CleanInBatches(
      [&db](std::chrono::system_clock::time_point h, int n) { return db.DeleteBefore(h, n); },
      options);
}

}  // namespace dtx
