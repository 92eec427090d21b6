// The PostgreSQL store's reads: the reader threads, each with its own connection (reconnecting
// with backoff), and the read operations.
#include <spdlog/spdlog.h>

#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "store/internal.h"
#include "store/postgres/store_impl.h"

namespace dtx::store::pg_internal {

// ---------------------------------------------------------------------------------------------------
// Reads.

void PostgresStore::Load(std::string gid, Callback<std::optional<core::TransSnapshot>> done) {
  SubmitRead<std::optional<core::TransSnapshot>>(
      std::move(done), [this, gid = std::move(gid)](PgConn& c) { return LoadOn(c, gid); });
}

void PostgresStore::List(ListQuery query, Callback<ListPage> done) {
  if (Status s = internal::ValidateListQuery(query); !s.ok()) return done(std::move(s));
  SubmitRead<ListPage>(std::move(done),
                       [this, q = std::move(query)](PgConn& c) { return ListOn(c, q); });
}

Result<std::optional<core::TransSnapshot>> PostgresStore::LoadOn(PgConn& c,
                                                                 const std::string& gid) {
  Params p;
  p.Text(gid);
  if (!p.nul_free()) return std::optional<core::TransSnapshot>();  // cannot be stored: unknown
  std::vector<Command> cmds = {Command::Exec(kBeginRead), Command::Exec(kLoadGlobal, &p),
                               Command::Exec(kLoadBranches, &p), Command::Exec(kCommit)};
  auto r = c.Run(cmds, IoDeadline());
  if (!r.ok()) return r.status();
  for (size_t i = 0; i < cmds.size(); ++i) {
    if (!pg::ResultOk((*r)[i].get())) {
      Status s = pg::ErrorStatus((*r)[i].get(), "load " + cmds[i].name);
      std::vector<Command> rb = {Command::Exec(kRollback)};
      (void)c.Run(rb, IoDeadline());
      return s;
    }
  }
  const PGresult* g = (*r)[1].get();
  if (PQntuples(g) == 0) return std::optional<core::TransSnapshot>();
  core::TransSnapshot t;
  auto global = ReadGlobal(g, 0);
  if (!global.ok()) return global.status();
  t.global = std::move(global).value();
  const PGresult* b = (*r)[2].get();
  for (int i = 0; i < PQntuples(b); ++i) {
    auto row = ReadBranch(b, i);
    if (!row.ok()) return row.status();
    t.branches.push_back(std::move(row).value());
  }
  return std::optional<core::TransSnapshot>(std::move(t));
}

Result<ListPage> PostgresStore::ListOn(PgConn& c, const ListQuery& q) {
  // One prepared statement per combination of filters present (at most 64), prepared on first use.
  unsigned mask = (q.gid.empty() ? 0U : 1U) | (q.status.empty() ? 0U : 2U) |
                  (q.trans_type.empty() ? 0U : 4U) | (q.create_time_start_ms == 0 ? 0U : 8U) |
                  (q.create_time_end_ms == 0 ? 0U : 16U) | (q.before_id == 0 ? 0U : 32U);
  Params p;
  std::string where;
  auto add = [&](const char* term, const char* cast) {
    where += where.empty() ? " WHERE " : " AND ";
    where += term;
    where += "$" + std::to_string(p.size()) + cast;
  };
  if ((mask & 1U) != 0) {
    p.Text(q.gid);
    add("gid = ", "");
  }
  if ((mask & 2U) != 0) {
    p.Text(q.status);
    add("status = ", "");
  }
  if ((mask & 4U) != 0) {
    p.Text(q.trans_type);
    add("trans_type = ", "");
  }
  if ((mask & 8U) != 0) {
    p.Int(q.create_time_start_ms);
    add("create_time >= ", "::int8");
  }
  if ((mask & 16U) != 0) {
    p.Int(q.create_time_end_ms);
    add("create_time <= ", "::int8");
  }
  if ((mask & 32U) != 0) {
    p.Int(q.before_id);
    add("id < ", "::int8");
  }
  p.Int(q.limit);
  if (!p.nul_free()) return ListPage{};  // a filter no stored value can match
  const std::string name = "dtx_list_" + std::to_string(mask);
  std::vector<Command> cmds;
  if (!c.IsPrepared(name)) {
    cmds.push_back(Command::Prepare(
        name, std::string("SELECT ") + kGlobalColumns + " FROM trans_global" + where +
                  " ORDER BY id DESC LIMIT $" + std::to_string(p.size()) + "::int8"));
  }
  cmds.push_back(Command::Exec(name, &p));
  auto r = c.Run(cmds, IoDeadline());
  if (!r.ok()) return r.status();
  for (size_t i = 0; i < cmds.size(); ++i) {
    if (!pg::ResultOk((*r)[i].get())) return pg::ErrorStatus((*r)[i].get(), "list");
  }
  c.MarkPrepared(name);
  const PGresult* rows = r->back().get();
  ListPage page;
  for (int i = 0; i < PQntuples(rows); ++i) {
    auto g = ReadGlobal(rows, i);
    if (!g.ok()) return g.status();
    page.transactions.push_back(std::move(g).value());
  }
  if (static_cast<int>(page.transactions.size()) == q.limit) {
    page.next_before_id = page.transactions.back().id;
  }
  return page;
}

Result<std::vector<KvRow>> PostgresStore::KvReadOn(PgConn& c, const char* stmt, const Params& p) {
  if (!p.nul_free()) return std::vector<KvRow>();  // no stored value can match
  std::vector<Command> cmds = {Command::Exec(stmt, &p)};
  auto r = c.Run(cmds, IoDeadline());
  if (!r.ok()) return r.status();
  const PGresult* rows = r->front().get();
  if (!pg::ResultOk(rows)) return pg::ErrorStatus(rows, stmt);
  std::vector<KvRow> out;
  out.reserve(static_cast<size_t>(PQntuples(rows)));
  for (int i = 0; i < PQntuples(rows); ++i) out.push_back(ReadKv(rows, i));
  return out;
}

void PostgresStore::KvGet(std::string cat, std::string k, Callback<std::optional<KvRow>> done) {
  SubmitRead<std::optional<KvRow>>(
      std::move(done),
      [this, cat = std::move(cat), k = std::move(k)](PgConn& c) -> Result<std::optional<KvRow>> {
        Params p;
        p.Text(cat).Text(k);
        auto rows = KvReadOn(c, kKvGet, p);
        if (!rows.ok()) return rows.status();
        if (rows->empty()) return std::optional<KvRow>();
        return std::optional<KvRow>(std::move(rows->front()));
      });
}

void PostgresStore::KvQuery(std::string cat, std::string k, Callback<std::vector<KvRow>> done) {
  SubmitRead<std::vector<KvRow>>(std::move(done),
                                 [this, cat = std::move(cat), k = std::move(k)](PgConn& c) {
                                   Params p;
                                   p.Text(cat).Text(k);
                                   return KvReadOn(c, kKvQuery, p);
                                 });
}

void PostgresStore::KvScan(std::string cat, int64_t before_id, int limit, Callback<KvPage> done) {
  if (Status s = internal::ValidateKvScan(before_id, limit); !s.ok()) return done(std::move(s));
  SubmitRead<KvPage>(std::move(done),
                     [this, cat = std::move(cat), before_id, limit](PgConn& c) -> Result<KvPage> {
                       Params p;
                       p.Text(cat).Int(before_id).Int(limit);
                       auto rows = KvReadOn(c, kKvScan, p);
                       if (!rows.ok()) return rows.status();
                       KvPage page;
                       page.rows = std::move(rows).value();
                       if (static_cast<int>(page.rows.size()) == limit) {
                         page.next_before_id = page.rows.back().id;
                       }
                       return page;
                     });
}

template <class T, class F>
void PostgresStore::SubmitRead(Callback<T> done, F fn) {
  Status refused;
  {
    std::lock_guard lock(read_mu_);
    if (read_stopping_) {
      refused = Status::Unavailable("store closed");
    } else if (read_queue_.size() >= o_.max_queued_reads) {
      refused = Status::Unavailable("store read queue full (" +
                                    std::to_string(o_.max_queued_reads) + " operations)");
    } else {
      // `done` is copied, not moved: the refusal path below still needs it.
      read_queue_.push_back([this, done, fn = std::move(fn)](Reader& r) mutable {
        Result<T> result = WithReader<T>(r, fn);
        done(std::move(result));
      });
    }
  }
  if (!refused.ok()) return done(std::move(refused));
  read_cv_.notify_one();
}

template <class T, class F>
Result<T> PostgresStore::WithReader(Reader& r, F& fn) {
  Status last;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (r.conn != nullptr && !r.conn->CheckIdle()) r.conn.reset();
    if (r.conn == nullptr) {
      if (pg::Clock::now() < r.next_connect) return r.last_error;  // backing off: fail fast
      auto c = Connect(/*writer=*/false);
      if (!c.ok()) {
        if (r.backoff.failures() == 0) {
          spdlog::error("postgres store: reader cannot reconnect: {}", c.status().message());
        }
        r.last_error = Status::Unavailable(c.status().message());
        r.next_connect = pg::Clock::now() + r.backoff.Next();
        return r.last_error;
      }
      r.conn = std::move(c).value();
      r.backoff.Reset();
    }
    Result<T> out = fn(*r.conn);
    if (out.ok() || !r.conn->broken()) return out;
    last = out.status();
    spdlog::warn("postgres store {}: reader connection lost ({}); reconnecting", display_,
                 last.message());
    r.conn.reset();
  }
  return last;
}

void PostgresStore::ReaderLoop(std::unique_ptr<PgConn> conn) {
  Reader reader;
  reader.conn = std::move(conn);
  for (;;) {
    ReadOp op;
    {
      std::unique_lock lock(read_mu_);
      read_cv_.wait(lock, [&] { return read_stopping_ || !read_queue_.empty(); });
      if (read_queue_.empty()) break;
      op = std::move(read_queue_.front());
      read_queue_.pop_front();
    }
    try {
      op(reader);
    } catch (const std::exception& e) {
      spdlog::error("postgres store: a read callback threw: {}", e.what());
    } catch (...) {
      spdlog::error("postgres store: a read callback threw");
    }
  }
}

// Issue 13: the call history and the due backlog (statements in retention.cc).
void PostgresStore::LoadAttempts(std::string gid, Callback<std::vector<AttemptRow>> done) {
  SubmitRead<std::vector<AttemptRow>>(
      std::move(done), [this, gid = std::move(gid)](PgConn& c) -> Result<std::vector<AttemptRow>> {
        Params p;
        p.Text(gid);
        if (!p.nul_free()) return std::vector<AttemptRow>();  // no stored gid has a NUL
        const Command cmd = Command::Exec(kLoadAttempts, &p);
        auto r = c.Run(std::span<const Command>(&cmd, 1), IoDeadline());
        if (!r.ok()) return r.status();
        const PGresult* rows = r->front().get();
        if (!pg::ResultOk(rows)) return pg::ErrorStatus(rows, "load attempts");
        std::vector<AttemptRow> out;
        for (int i = 0; i < PQntuples(rows); ++i) {
          AttemptRow& a = out.emplace_back();
          a.branch_id = pg::GetBytes(rows, i, 0);
          a.op = pg::GetBytes(rows, i, 1);
          a.attempt.seq = pg::GetInt(rows, i, 2);
          a.attempt.time_ms = pg::GetInt(rows, i, 3);
          a.attempt.http_status = static_cast<int>(pg::GetInt(rows, i, 4));
          a.attempt.latency_ms = pg::GetInt(rows, i, 5);
          a.attempt.result = pg::GetBytes(rows, i, 6);
          a.attempt.error = pg::GetBytes(rows, i, 7);
        }
        return out;
      });
}

void PostgresStore::CountDue(int64_t now_ms, int64_t cap, Callback<int64_t> done) {
  if (Status s = internal::ValidateCountCap(cap); !s.ok()) return done(std::move(s));
  SubmitRead<int64_t>(std::move(done), [this, now_ms, cap](PgConn& c) -> Result<int64_t> {
    Params p;
    p.Int(now_ms).Int(cap);
    const Command cmd = Command::Exec(kCountDue, &p);
    auto r = c.Run(std::span<const Command>(&cmd, 1), IoDeadline());
    if (!r.ok()) return r.status();
    const PGresult* row = r->front().get();
    if (!pg::ResultOk(row)) return pg::ErrorStatus(row, "count due");
    if (PQntuples(row) != 1) return UnexpectedShape("count due");
    return pg::GetInt(row, 0, 0);
  });
}

}  // namespace dtx::store::pg_internal
