// The PostgreSQL side of the inbox (inbox_db.h): begin; insert ... on conflict do nothing (a
// concurrent insert of the same key by another instance waits for that transaction and then sees
// the conflict, so a message taken over from a slow instance is still applied once); commit.
#include <libpq-fe.h>

#include <memory>
#include <string>

#include "sdk/barrier_internal.h"
#include "sdk/inbox_db.h"

namespace dtx::inbox_internal {
namespace {

constexpr size_t kMaxIdentifierBytes = 55;

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

std::string Trimmed(const char* text) {
  std::string s = text != nullptr ? text : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

Status PgError(PGconn* conn, const PGresult* res, std::string_view what) {
  std::string msg = "inbox: " + std::string(what) + ": " +
                    Trimmed(res != nullptr ? PQresultErrorMessage(res) : PQerrorMessage(conn));
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  std::string_view code = state != nullptr ? state : "";
  if (code.empty() || PQstatus(conn) == CONNECTION_BAD) return Status::Unavailable(msg);
  msg += " [SQLSTATE " + std::string(code) + "]";
  if (code == "55P03" || code == "57014") return Status::Timeout(msg);
  if (code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") ||
      code == "40001" || code == "40P01") {
    return Status::Unavailable(msg);
  }
  return Status::Internal(msg);
}

std::string LocalName(const std::string& table) {
  size_t dot = table.find('.');
  return dot == std::string::npos ? table : table.substr(dot + 1);
}

class PgInboxDb final : public InboxDb {
 public:
  PgInboxDb(PGconn* conn, Tables t) : conn_(conn), t_(std::move(t)) {}

  Status EnsureTables() override {
    if (PQtransactionStatus(conn_) != PQTRANS_IDLE) {
      return Status::InvalidArgument(
          "inbox: EnsureTables needs a connection outside a transaction");
    }
    const std::string& a = t_.applied;
    const std::string& d = t_.dead;
    std::string sql = "set local client_min_messages = warning;\n";
    for (const std::string* t : {&a, &d}) {
      if (size_t dot = t->find('.'); dot != std::string::npos) {
        sql += "create schema if not exists " + t->substr(0, dot) + ";\n";
      }
    }
    sql += "create table if not exists " + a +
           " (consumer text not null, message_id text not null,"
           " applied_at timestamptz not null default now(), primary key (consumer, message_id));\n"
           "create index if not exists " +
           LocalName(a) + "_applied_at on " + a + " (consumer, applied_at);\n" +
           "create table if not exists " + d +
           " (consumer text not null, message_id text not null, topic text not null,"
           " msg_key text not null, payload text not null, headers text not null,"
           " attempts integer not null, last_error text not null,"
           " dead_at timestamptz not null default now(), primary key (consumer, message_id));\n";
    return Exec(sql, {}).status();
  }

  Status Begin() override {
    if (PQtransactionStatus(conn_) != PQTRANS_IDLE) {
      return Status::InvalidArgument(
          "inbox: the PostgreSQL connection is inside a transaction; the inbox begins and ends its "
          "own");
    }
    return Exec("begin", {}).status();
  }
  Status Commit() override {
    if (PQtransactionStatus(conn_) != PQTRANS_INTRANS) {
      Rollback();
      return Status::Internal(
          "inbox: the transaction was ended or aborted by the handler (COMMIT/ROLLBACK, or a "
          "failed statement whose error the handler did not return)");
    }
    return Exec("commit", {}).status();
  }
  void Rollback() override {
    if (PQtransactionStatus(conn_) != PQTRANS_IDLE) PgResult(PQexec(conn_, "rollback"));
  }

  Status Savepoint() override { return Exec("savepoint dtx_inbox", {}).status(); }
  Status ReleaseSavepoint() override { return Exec("release savepoint dtx_inbox", {}).status(); }
  Status RollbackToSavepoint() override {
    return Exec("rollback to savepoint dtx_inbox", {}).status();
  }

  Result<bool> InsertApplied(const std::string& consumer, const std::string& id) override {
    Result<int> n = Exec("insert into " + t_.applied +
                             " (consumer, message_id) values ($1, $2) on conflict do nothing",
                         {consumer, id});
    if (!n.ok()) return n.status();
    return n.value() == 1;
  }

  Status InsertDeadLetter(const std::string& consumer, const InboxMessage& m, int attempts,
                          const std::string& error) override {
    const std::string headers = EncodeHeaders(m.headers);
    const std::string n = std::to_string(attempts);
    return Exec("insert into " + t_.dead +
                    " (consumer, message_id, topic, msg_key, payload, headers, attempts,"
                    " last_error) values ($1,$2,$3,$4,$5,$6,$7,$8) on conflict (consumer, "
                    "message_id) do update set attempts = excluded.attempts, last_error = "
                    "excluded.last_error, dead_at = now()",
                {consumer, m.message_id, m.topic, m.key, m.payload, headers, n, error})
        .status();
  }

  Status DeleteDeadLetter(const std::string& consumer, const std::string& id) override {
    return Exec("delete from " + t_.dead + " where consumer = $1 and message_id = $2",
                {consumer, id})
        .status();
  }

  Status RecordDeadLetterFailure(const std::string& consumer, const std::string& id,
                                 const std::string& error) override {
    return Exec("update " + t_.dead +
                    " set attempts = attempts + 1, last_error = $1 where consumer = $2 and "
                    "message_id = $3",
                {error, consumer, id})
        .status();
  }

  Result<std::vector<DeadLetter>> ListDeadLetters(const std::string& consumer,
                                                  size_t limit) override {
    const std::string sql =
        "select message_id, topic, msg_key, payload, headers, attempts, last_error, "
        "(extract(epoch from dead_at) * 1000)::bigint from " +
        t_.dead + " where consumer = $1 order by dead_at, message_id limit $2";
    const std::string lim = std::to_string(limit);
    const char* params[] = {consumer.c_str(), lim.c_str()};
    PgResult r(PQexecParams(conn_, sql.c_str(), 2, nullptr, params, nullptr, nullptr, 0));
    if (!r || PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
      return PgError(conn_, r.get(), "list dead letters");
    }
    std::vector<DeadLetter> out;
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      auto col = [&](int c) { return std::string(PQgetvalue(r.get(), i, c)); };
      DeadLetter d;
      d.message = {.topic = col(1),
                   .key = col(2),
                   .message_id = col(0),
                   .payload = col(3),
                   .headers = DecodeHeaders(col(4))};
      d.attempts = std::stoi(col(5));
      d.last_error = col(6);
      d.dead_at_ms = std::stoll(col(7));
      out.push_back(std::move(d));
    }
    return out;
  }

  Result<int64_t> DeleteAppliedBefore(const std::string& consumer, int64_t before_ms,
                                      size_t batch) override {
    Result<int> n = Exec(
        "delete from " + t_.applied + " where (consumer, message_id) in (select consumer, " +
            "message_id from " + t_.applied +
            " a where consumer = $1 and applied_at < to_timestamp($2::bigint / 1000.0) and "
            "not exists (select 1 from " +
            t_.dead + " d where d.consumer = a.consumer and d.message_id = a.message_id) limit $3)",
        {consumer, std::to_string(before_ms), std::to_string(batch)});
    if (!n.ok()) return n.status();
    return static_cast<int64_t>(n.value());
  }

 private:
  // Runs one command; returns the rows it changed.
  Result<int> Exec(const std::string& sql, const std::vector<std::string>& params) {
    std::vector<const char*> values;
    for (const std::string& p : params) values.push_back(p.c_str());
    PgResult r(params.empty() ? PQexec(conn_, sql.c_str())
                              : PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()),
                                             nullptr, values.data(), nullptr, nullptr, 0));
    if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      return PgError(conn_, r.get(), sql.substr(0, sql.find(' ', 12)));
    }
    const char* tuples = PQcmdTuples(r.get());
    return tuples != nullptr && *tuples != '\0' ? std::atoi(tuples) : 0;
  }

  PGconn* conn_;
  Tables t_;
};

}  // namespace

Result<std::unique_ptr<InboxDb>> OpenPgInboxDb(PGconn* conn, Tables tables) {
  for (const std::string& name : {tables.applied, tables.dead}) {
    Result<barrier_internal::TableName> n =
        barrier_internal::ParseTableName(name, /*allow_schema=*/true, kMaxIdentifierBytes);
    if (!n.ok()) return Status::InvalidArgument("inbox: " + n.status().message());
  }
  return std::unique_ptr<InboxDb>(new PgInboxDb(conn, std::move(tables)));
}

}  // namespace dtx::inbox_internal
