// dtx::Outbox (include/dtx/outbox.h): validation, the schema of docs/outbox.md for SQLite and
// PostgreSQL, and the SQLite insert of one row in the caller's open transaction. The PostgreSQL
// calls (EnsureTable/Write on a PGconn) are in outbox_pg.cc, part of libdtx_pg.
#include "dtx/outbox.h"

#include <sqlite3.h>

#include <boost/json.hpp>
#include <memory>
#include <random>
#include <string>

#include "sdk/barrier_internal.h"

namespace dtx {
namespace {

constexpr size_t kMaxTablePartBytes = 55;

bool IsTopicChar(char c) { return c > 0x20 && c < 0x7f; }

bool IsHeaderNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

Status CheckText(std::string_view what, std::string_view v) {
  if (v.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("outbox: " + std::string(what) + " contains a NUL byte");
  }
  return Status::Ok();
}

Status SqliteStatus(sqlite3* db, int rc, std::string_view what) {
  std::string msg = std::string(what) + ": " + sqlite3_errstr(rc) + " (" + sqlite3_errmsg(db) + ")";
  switch (rc & 0xFF) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Timeout(std::move(msg));
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CORRUPT:
      return Status::IoError(std::move(msg));
    default:
      return Status::Internal(std::move(msg));
  }
}

struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};

std::string PgSchemaSql(std::string_view table) {
  const std::string t(table);
  std::string base = t;  // index, trigger and function names: the table name with '.' -> '_'
  for (char& c : base) c = c == '.' ? '_' : c;
  const size_t dot = t.find('.');
  const std::string schema = dot == std::string::npos ? "" : t.substr(0, dot);
  const std::string qualify = schema.empty() ? "" : schema + ".";
  const std::string local = dot == std::string::npos ? t : t.substr(dot + 1);
  std::string sql;
  if (!schema.empty()) sql += "create schema if not exists " + schema + ";\n";
  sql += "create table if not exists " + t +
         " (\n"
         "  id bigserial primary key,\n"
         "  message_id text not null default replace(gen_random_uuid()::text, '-', ''),\n"
         "  topic text not null,\n"
         "  msg_key text not null default '',\n"
         "  payload text not null,\n"
         "  headers text not null default '{}',\n"
         "  created_at timestamptz not null default now(),\n"
         "  state smallint not null default 0,\n"
         "  attempts integer not null default 0,\n"
         "  last_error text,\n"
         "  published_at timestamptz);\n";
  sql += "create index if not exists " + local + "_pending on " + t + " (id) where state = 0;\n";
  sql += "create index if not exists " + local + "_published on " + t +
         " (published_at) where state = 1;\n";
  // NOTIFY only while a relay waits for rows (it holds the wake-up lock, exclusive): a NOTIFY
  // serializes the commits of the notifying transactions (PostgreSQL holds a database-wide lock
  // from before the commit's flush to after it), which capped writers at one commit per flush.
  // A writer that does not notify holds the lock shared until it ends, so a relay arms only
  // after it committed (and then claims once more before it waits).
  const std::string channel = OutboxNotifyChannel(table);
  sql += "create or replace function " + qualify + local +
         "_notify() returns trigger language plpgsql as $f$ begin if not "
         "pg_try_advisory_xact_lock_shared(hashtextextended('" +
         channel + "', 0)) then perform pg_notify('" + channel +
         "', ''); end if; return null; end $f$;\n";
  sql += "create or replace trigger " + local + "_notify after insert on " + t +
         " for each statement execute function " + qualify + local + "_notify();\n";
  return sql;
}

std::string SqliteSchemaSql(std::string_view table) {
  const std::string t(table);
  return "create table if not exists " + t +
         " (\n"
         "  id integer primary key autoincrement,\n"
         "  message_id text not null default (lower(hex(randomblob(16)))),\n"
         "  topic text not null,\n"
         "  msg_key text not null default '',\n"
         "  payload text not null,\n"
         "  headers text not null default '{}',\n"
         "  created_at integer not null default (cast((julianday('now') - 2440587.5) * 86400000 "
         "as integer)),\n"
         "  state integer not null default 0,\n"
         "  attempts integer not null default 0,\n"
         "  last_error text,\n"
         "  published_at integer);\n"
         "create index if not exists " +
         t + "_pending on " + t + " (id) where state = 0;\n" + "create index if not exists " + t +
         "_published on " + t + " (published_at) where state = 1;\n";
}

}  // namespace

Status ValidateOutboxMessage(const OutboxMessage& m) {
  if (m.topic.empty() || m.topic.size() > kOutboxTopicMaxBytes) {
    return Status::InvalidArgument("outbox: topic must have 1.." +
                                   std::to_string(kOutboxTopicMaxBytes) + " bytes");
  }
  for (char c : m.topic) {
    if (!IsTopicChar(c)) {
      return Status::InvalidArgument("outbox: topic '" + m.topic +
                                     "' has a character outside printable ASCII or a space");
    }
  }
  if (m.key.size() > kOutboxKeyMaxBytes) {
    return Status::InvalidArgument("outbox: key longer than " + std::to_string(kOutboxKeyMaxBytes) +
                                   " bytes");
  }
  if (m.message_id.size() > kOutboxMessageIdMaxBytes) {
    return Status::InvalidArgument("outbox: message_id longer than " +
                                   std::to_string(kOutboxMessageIdMaxBytes) + " bytes");
  }
  if (m.payload.size() > kOutboxPayloadMaxBytes) {
    return Status::InvalidArgument("outbox: payload larger than " +
                                   std::to_string(kOutboxPayloadMaxBytes) + " bytes");
  }
  if (m.headers.size() > kOutboxHeadersMax) {
    return Status::InvalidArgument("outbox: more than " + std::to_string(kOutboxHeadersMax) +
                                   " headers");
  }
  for (const auto& [name, value] : m.headers) {
    if (name.empty() || name.size() + value.size() > kOutboxHeaderMaxBytes) {
      return Status::InvalidArgument("outbox: header '" + name + "' is empty or over " +
                                     std::to_string(kOutboxHeaderMaxBytes) + " bytes");
    }
    for (char c : name) {
      if (!IsHeaderNameChar(c)) {
        return Status::InvalidArgument("outbox: header name '" + name +
                                       "' has a character outside [A-Za-z0-9_.-]");
      }
    }
    if (Status s = CheckText("header value", value); !s.ok()) return s;
  }
  if (Status s = CheckText("key", m.key); !s.ok()) return s;
  if (Status s = CheckText("message_id", m.message_id); !s.ok()) return s;
  return CheckText("payload", m.payload);
}

std::string NewOutboxMessageId() {
  thread_local std::mt19937_64 gen{(static_cast<uint64_t>(std::random_device{}()) << 32) ^
                                   std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half) {
    uint64_t v = gen();
    for (int i = 0; i < 16; ++i) id[half * 16 + i] = kHex[(v >> (4 * i)) & 0xF];
  }
  return id;
}

std::string EncodeOutboxHeaders(const std::vector<std::pair<std::string, std::string>>& headers) {
  boost::json::object o;
  for (const auto& [name, value] : headers) o[name] = value;
  return boost::json::serialize(o);
}

Result<std::vector<std::pair<std::string, std::string>>> DecodeOutboxHeaders(
    std::string_view json) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(json, ec);
  if (ec || !v.is_object()) {
    return Status::InvalidArgument("outbox: headers are not a JSON object");
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& kv : v.as_object()) {
    if (!kv.value().is_string()) {
      return Status::InvalidArgument("outbox: header '" + std::string(kv.key()) +
                                     "' is not a string");
    }
    out.emplace_back(std::string(kv.key()), std::string(kv.value().as_string()));
  }
  return out;
}

std::string OutboxNotifyChannel(std::string_view table) {
  std::string channel = "dtx_outbox_" + std::string(table);
  for (char& c : channel) c = c == '.' ? '_' : c;
  return channel;
}

Outbox::Outbox(OutboxOptions options) : options_(std::move(options)) {}

Status Outbox::ValidTable(OutboxDialect dialect) const {
  return barrier_internal::ParseTableName(options_.table, dialect == OutboxDialect::kPostgres,
                                          kMaxTablePartBytes)
      .status();
}

Result<std::string> Outbox::SchemaSql(OutboxDialect dialect) const {
  if (Status s = ValidTable(dialect); !s.ok()) return s;
  return dialect == OutboxDialect::kPostgres ? PgSchemaSql(options_.table)
                                             : SqliteSchemaSql(options_.table);
}

Status Outbox::EnsureTable(sqlite3* db) const {
  Result<std::string> sql = SchemaSql(OutboxDialect::kSqlite);
  if (!sql.ok()) return sql.status();
  if (sqlite3_get_autocommit(db) == 0) {
    return Status::InvalidArgument("outbox: EnsureTable needs a connection outside a transaction");
  }
  const std::string script = "BEGIN IMMEDIATE;\n" + sql.value() + "COMMIT;";
  int rc = sqlite3_exec(db, script.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    Status s = SqliteStatus(db, rc, "outbox: create table");
    if (sqlite3_get_autocommit(db) == 0) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return s;
  }
  return Status::Ok();
}

Result<std::string> Outbox::Write(sqlite3* db, const OutboxMessage& m) const {
  if (Status s = ValidTable(OutboxDialect::kSqlite); !s.ok()) return s;
  if (Status s = ValidateOutboxMessage(m); !s.ok()) return s;
  if (sqlite3_get_autocommit(db) != 0) {
    return Status::InvalidArgument(
        "outbox: Write needs the caller's open transaction (BEGIN first): a row written in "
        "autocommit would commit without the business data");
  }
  const std::string id = m.message_id.empty() ? NewOutboxMessageId() : m.message_id;
  const std::string headers = EncodeOutboxHeaders(m.headers);
  const std::string sql = "insert into " + options_.table +
                          " (message_id, topic, msg_key, payload, headers) values (?,?,?,?,?)";
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &raw, nullptr);
  std::unique_ptr<sqlite3_stmt, StmtDeleter> stmt(raw);
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, "outbox: prepare insert");
  const std::string_view values[] = {id, m.topic, m.key, m.payload, headers};
  for (int i = 0; i < 5; ++i) {
    const char* data = values[i].data() != nullptr ? values[i].data() : "";
    sqlite3_bind_text(raw, i + 1, data, static_cast<int>(values[i].size()), SQLITE_STATIC);
  }
  rc = sqlite3_step(raw);
  if (rc != SQLITE_DONE) return SqliteStatus(db, rc, "outbox: insert");
  return id;
}

}  // namespace dtx
