// The PostgreSQL outbox source: see source.h. A claim is a transaction holding row locks (FOR
// UPDATE SKIP LOCKED) and one advisory transaction lock per ordering key, so no other relay claims
// a row or a later row of the same key until this claim commits or its connection dies.
#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "dtx/outbox.h"
#include "relay/source_internal.h"

namespace dtx::relay {
namespace {

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, ResultDeleter>;

std::string Trimmed(const char* text) {
  std::string s = text != nullptr ? text : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// FNV-1a of the table name: the advisory-lock namespace (first key) of this outbox.
int32_t LockNamespace(std::string_view table) {
  uint32_t h = 2166136261u;
  for (char c : table) h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
  return static_cast<int32_t>(h);
}

class PgSource final : public OutboxSource {
 public:
  PgSource(std::string spec, std::string table)
      : spec_(std::move(spec)), table_(std::move(table)) {}
  ~PgSource() override {
    if (conn_ != nullptr) PQfinish(conn_);
    if (listener_ != nullptr) PQfinish(listener_);
  }

  Status Connect() {
    if (conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK) return Status::Ok();
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = PQconnectdb(spec_.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) {
      return Status::Unavailable("outbox database: " + Trimmed(PQerrorMessage(conn_)));
    }
    // A relay that hangs (not dies) must not hold its claim forever; the publish timeout is far
    // below this.
    if (Status s = Exec("set idle_in_transaction_session_timeout = '60s'", nullptr); !s.ok()) {
      return s;
    }
    // The claim must walk the pending index in id order and stop at its limit. With statistics
    // from a nearly empty table (a new outbox, before autoanalyze) the planner chose a bitmap scan
    // of every pending row plus a sort: each claim read the whole backlog and tried the key lock
    // of every pending row, so claims slowed as the backlog grew and the relay fell further
    // behind (at 10,000 rows/s offered: 77 ms per 500-row claim). No statement of the relay
    // needs a sort.
    return Exec("set enable_sort = off", nullptr);
  }

  Status Prepare(bool init) override {
    if (Status s = Connect(); !s.ok()) return s;
    if (init) return Outbox({.table = table_}).EnsureTable(conn_);
    const char* params[] = {table_.c_str()};
    PgResult r(PQexecParams(conn_, "select to_regclass($1) is not null", 1, nullptr, params,
                            nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) return Error(r.get(), "check table");
    if (std::string_view(PQgetvalue(r.get(), 0, 0)) != "t") {
      return Status::NotFound(MissingTableMessage(table_));
    }
    return Status::Ok();
  }

  Result<std::vector<OutboxRow>> Claim(size_t max) override {
    if (Status s = Connect(); !s.ok()) return s;
    // The claim's transaction ends with its mark (Finish). Its commit does not wait for the WAL
    // flush: a mark lost in a crash of the database server leaves its rows pending, so they are
    // published again — the at-least-once contract (docs/outbox.md "Delivery"). Marks reach the
    // WAL in commit order, so a crash keeps a prefix of them: a key's later mark never survives
    // an earlier one it depends on. Same statement, same round trip as the begin.
    if (Status s = Exec("begin; set local synchronous_commit = off", nullptr); !s.ok()) return s;
    // A CASE, not AND/OR: the planner may reorder those, and the key lock must be tried only on
    // the rows of this worker's share.
    const std::string sql =
        "select id, message_id, topic, msg_key, payload, headers, attempts from " + table_ +
        " where state = 0 and case when msg_key = '' then true when $3::int > 1 and "
        "(hashtext(msg_key)::bigint + 2147483648) % $3::int <> $4::int then false else "
        "pg_try_advisory_xact_lock($1::int, hashtext(msg_key)) end order by id limit $2 for "
        "update skip locked";
    const std::string ns = std::to_string(LockNamespace(table_));
    const std::string limit = std::to_string(max);
    const std::string count = std::to_string(share_count_), index = std::to_string(share_index_);
    const char* params[] = {ns.c_str(), limit.c_str(), count.c_str(), index.c_str()};
    PgResult r(PQexecParams(conn_, sql.c_str(), 4, nullptr, params, nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
      Status s = Error(r.get(), "claim");
      Abandon();
      return s;
    }
    std::vector<OutboxRow> rows(PQntuples(r.get()));
    for (size_t i = 0; i < rows.size(); ++i) {
      const int n = static_cast<int>(i);
      rows[i].id = std::stoll(PQgetvalue(r.get(), n, 0));
      rows[i].message_id = PQgetvalue(r.get(), n, 1);
      rows[i].topic = PQgetvalue(r.get(), n, 2);
      rows[i].key = PQgetvalue(r.get(), n, 3);
      rows[i].payload.assign(PQgetvalue(r.get(), n, 4), PQgetlength(r.get(), n, 4));
      rows[i].headers = PQgetvalue(r.get(), n, 5);
      rows[i].attempts = std::atoi(PQgetvalue(r.get(), n, 6));
    }
    if (Status s = DropOvertakingKeys(&rows); !s.ok()) {
      Abandon();
      return s;
    }
    if (rows.empty()) Abandon();  // nothing claimed: end the transaction now
    return rows;
  }

  // The claim's advisory lock of a key can fail on the key's earlier rows and succeed on its later
  // ones within one scan (the holder ended meanwhile — e.g. a relay killed before it published).
  // A key with a pending row before its first claimed one is dropped from this claim (its rows
  // stay pending), so a key's rows are never published past an earlier pending one. The check is
  // a new statement, so it sees every claim that ended.
  Status DropOvertakingKeys(std::vector<OutboxRow>* rows) {
    std::map<std::string, int64_t> first;  // key -> its lowest claimed id
    for (const OutboxRow& r : *rows) {
      if (!r.key.empty()) first.emplace(r.key, r.id);  // rows come in id order
    }
    if (first.empty()) return Status::Ok();
    std::string keys = "{", ids = "{";
    for (const auto& [key, id] : first) {
      if (keys.size() > 1) {
        keys += ',';
        ids += ',';
      }
      keys += '"';
      for (char c : key)
        keys += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
      keys += '"';
      ids += std::to_string(id);
    }
    keys += '}';
    ids += '}';
    // Only pending rows before the last key's first claimed row can matter: an index range scan
    // of the pending index (a join over every pending row took ~70 ms on a 100,000-row backlog).
    int64_t bound = 0;
    for (const auto& [key, id] : first) bound = std::max(bound, id);
    const std::string upto = std::to_string(bound);
    const std::string sql = "select distinct t.msg_key from (select msg_key, id from " + table_ +
                            " where state = 0 and id < $3::bigint) t join unnest($1::text[], "
                            "$2::bigint[]) as c(k, first_id) on t.msg_key = c.k and t.id < "
                            "c.first_id";
    const char* params[] = {keys.c_str(), ids.c_str(), upto.c_str()};
    PgResult r(PQexecParams(conn_, sql.c_str(), 3, nullptr, params, nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) return Error(r.get(), "claim check");
    if (PQntuples(r.get()) == 0) return Status::Ok();
    std::set<std::string> drop;
    for (int i = 0; i < PQntuples(r.get()); ++i) drop.insert(PQgetvalue(r.get(), i, 0));
    std::erase_if(*rows, [&](const OutboxRow& row) { return drop.count(row.key) != 0; });
    return Status::Ok();
  }

  Status Finish(const std::vector<RowOutcome>& outcomes, int max_attempts,
                bool delete_published) override {
    std::string published = "{";
    for (const RowOutcome& o : outcomes) {
      if (o.kind != RowOutcome::kPublished) continue;
      if (published.size() > 1) published += ',';
      published += std::to_string(o.id);
    }
    published += '}';
    // clock_timestamp(), not now(): now() is the claim's start, before the broker had the rows.
    Status s =
        Exec(delete_published ? "delete from " + table_ + " where id = any($1::bigint[])"
                              : "update " + table_ +
                                    " set state = 1, published_at = clock_timestamp() where id = "
                                    "any($1::bigint[])",
             published.c_str());
    for (const RowOutcome& o : outcomes) {
      if (!s.ok() || o.kind == RowOutcome::kPublished) continue;
      const std::string id = std::to_string(o.id);
      const std::string park_at =
          o.kind == RowOutcome::kMalformed ? "0" : std::to_string(max_attempts);
      const char* params[] = {id.c_str(), o.error.c_str(), park_at.c_str()};
      PgResult r(PQexecParams(conn_,
                              ("update " + table_ +
                               " set attempts = attempts + 1, last_error = $2, state = case when "
                               "attempts + 1 >= $3::int then 2 else 0 end where id = $1::bigint")
                                  .c_str(),
                              3, nullptr, params, nullptr, nullptr, 0));
      if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) s = Error(r.get(), "record refusal");
    }
    if (s.ok()) s = Exec("commit", nullptr);
    if (!s.ok()) Abandon();
    return s;
  }

  void Abandon() override {
    if (conn_ != nullptr && PQtransactionStatus(conn_) != PQTRANS_IDLE) {
      PQclear(PQexec(conn_, "rollback"));
    }
  }

  Wakeup ArmWakeup() override {
    if (armed_) return Wakeup::kArmed;
    if (!ListenerReady()) return Wakeup::kPoll;
    const std::string channel = OutboxNotifyChannel(table_);
    const char* params[] = {channel.c_str()};
    PgResult r(PQexecParams(listener_, "select pg_try_advisory_lock(hashtextextended($1, 0))", 1,
                            nullptr, params, nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
      CloseListener();
      return Wakeup::kPoll;
    }
    armed_ = std::string_view(PQgetvalue(r.get(), 0, 0)) == "t";
    return armed_ ? Wakeup::kArmed : Wakeup::kBusy;
  }

  bool Armed() const override { return armed_; }

  void SetKeyShare(int count, int index) override {
    share_count_ = count;
    share_index_ = index;
  }

  void DisarmWakeup() override {
    if (!armed_) return;
    armed_ = false;
    const std::string channel = OutboxNotifyChannel(table_);
    const char* params[] = {channel.c_str()};
    PgResult r(PQexecParams(listener_, "select pg_advisory_unlock(hashtextextended($1, 0))", 1,
                            nullptr, params, nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) CloseListener();  // ends the lock too
  }

  bool WaitForRows(std::chrono::milliseconds timeout) override {
    if (!ListenerReady()) {
      SleepFor(timeout);  // polling fallback
      return false;
    }
    pollfd p{PQsocket(listener_), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(timeout.count()));
    PQconsumeInput(listener_);
    bool notified = false;
    while (PGnotify* n = PQnotifies(listener_)) {
      notified = true;
      PQfreemem(n);
    }
    if (PQstatus(listener_) != CONNECTION_OK) CloseListener();
    return notified;
  }

  Result<int64_t> DeletePublished(std::chrono::seconds age, size_t max) override {
    if (Status s = Connect(); !s.ok()) return s;
    const std::string sql = "delete from " + table_ + " where id in (select id from " + table_ +
                            " where state = 1 and published_at < now() - make_interval(secs => "
                            "$1::double precision) limit $2::int)";
    const std::string a = std::to_string(age.count()), m = std::to_string(max);
    const char* params[] = {a.c_str(), m.c_str()};
    PgResult r(PQexecParams(conn_, sql.c_str(), 2, nullptr, params, nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return Error(r.get(), "retention delete");
    return static_cast<int64_t>(std::atoll(PQcmdTuples(r.get())));
  }

  Result<int64_t> Requeue(const std::vector<int64_t>& ids) override {
    if (Status s = Connect(); !s.ok()) return s;
    std::string array = "{";
    for (int64_t id : ids) array += (array.size() > 1 ? "," : "") + std::to_string(id);
    array += '}';
    const std::string sql = "update " + table_ +
                            " set state = 0, attempts = 0, last_error = null where state = 2" +
                            (ids.empty() ? "" : " and id = any($1::bigint[])");
    const char* params[] = {array.c_str()};
    PgResult r(PQexecParams(conn_, sql.c_str(), ids.empty() ? 0 : 1, nullptr, params, nullptr,
                            nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return Error(r.get(), "requeue");
    return static_cast<int64_t>(std::atoll(PQcmdTuples(r.get())));
  }

  Result<std::vector<int64_t>> CountByState() override {
    if (Status s = Connect(); !s.ok()) return s;
    const std::string sql =
        "select count(*) filter (where state = 0), count(*) filter (where "
        "state = 1), count(*) filter (where state = 2) from " +
        table_;
    PgResult r(PQexec(conn_, sql.c_str()));
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) return Error(r.get(), "count");
    return std::vector<int64_t>{std::atoll(PQgetvalue(r.get(), 0, 0)),
                                std::atoll(PQgetvalue(r.get(), 0, 1)),
                                std::atoll(PQgetvalue(r.get(), 0, 2))};
  }

 private:
  Status Error(const PGresult* r, std::string_view what) {
    std::string msg = "outbox " + std::string(what) + ": " +
                      Trimmed(r != nullptr ? PQresultErrorMessage(r) : PQerrorMessage(conn_));
    if (PQstatus(conn_) != CONNECTION_OK) return Status::Unavailable(msg);
    const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    if (state != nullptr && std::string_view(state) == "42P01") return Status::NotFound(msg);
    return Status::Unavailable(msg);  // deadlock, serialization, shutdown: try again
  }

  // One statement with one text parameter, or without one (then several statements may go in one
  // round trip, separated by ';').
  Status Exec(const std::string& sql, const char* param) {
    PgResult r(param == nullptr
                   ? PQexec(conn_, sql.c_str())
                   : PQexecParams(conn_, sql.c_str(), 1, nullptr, &param, nullptr, nullptr, 0));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return Error(r.get(), sql.substr(0, 24));
    return Status::Ok();
  }

  // The LISTEN connection (it also holds the wake-up lock); false when it cannot be had now. A new
  // connection holds no lock: the relay is not armed.
  bool ListenerReady() {
    if (listener_ != nullptr && PQstatus(listener_) == CONNECTION_OK) return true;
    CloseListener();
    listener_ = PQconnectdb(spec_.c_str());
    const std::string listen = "listen " + OutboxNotifyChannel(table_);
    PgResult r(PQexec(listener_, listen.c_str()));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      CloseListener();
      return false;
    }
    return true;
  }

  void CloseListener() {
    if (listener_ != nullptr) PQfinish(listener_);
    listener_ = nullptr;
    armed_ = false;
  }

  std::string spec_;
  std::string table_;
  PGconn* conn_ = nullptr;
  PGconn* listener_ = nullptr;
  bool armed_ = false;                     // this relay holds the wake-up lock on listener_
  int share_count_ = 1, share_index_ = 0;  // SetKeyShare
};

}  // namespace

Result<std::unique_ptr<OutboxSource>> OpenPgSource(std::string_view spec, std::string_view table) {
  auto source = std::make_unique<PgSource>(std::string(spec), std::string(table));
  if (Status s = source->Connect(); !s.ok()) return s;
  return std::unique_ptr<OutboxSource>(std::move(source));
}

}  // namespace dtx::relay
