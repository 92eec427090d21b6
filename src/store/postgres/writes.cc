// The PostgreSQL store's writes: each operation is one prepared statement; the writer threads
// apply them in batches (one COMMIT per batch, a savepoint per operation).
#include <spdlog/spdlog.h>

#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "store/internal.h"
#include "store/postgres/store_impl.h"

namespace dtx::store::pg_internal {

// ---------------------------------------------------------------------------------------------------
// Writes.

void PostgresStore::Create(core::TransSnapshot trans, DoneCallback done) {
  const core::GlobalTrans& g = trans.global;
  WriteOp op;
  op.stmt = kCreate;
  if (const core::BranchRow* dup = internal::FindDuplicateBranch(trans.branches)) {
    op.pre = internal::BranchExists(g.gid, dup->branch_id, dup->op);
  }
  op.params.Text(g.gid)
      .Text(std::string(core::ToString(g.trans_type)))
      .Text(std::string(core::ToString(g.status)))
      .Text(g.protocol)
      .Text(g.query_prepared)
      .Text(g.custom_data)
      .Text(g.rollback_reason)
      .Text(g.result)
      .Text(g.owner)
      .Text(core::EncodeOptionsJson(g.options))
      .Int(g.create_time_ms)
      .Int(g.update_time_ms)
      .Int(g.finish_time_ms)
      .Int(g.rollback_time_ms)
      .Int(g.next_cron_interval_ms)
      .Int(g.next_cron_time_ms)
      .Int(g.retry_count)
      .Int(g.lease_until_ms);
  AddBranchArrays(trans.branches, op.params);
  if (op.pre.ok() && !op.params.nul_free()) op.pre = NulByte(g.gid);
  op.parse = [gid = g.gid, n = static_cast<int64_t>(trans.branches.size())](const PGresult* r) {
    if (PQntuples(r) != 1 || PQnfields(r) != 2) return UnexpectedShape("create");
    if (pg::GetInt(r, 0, 0) == 0) return internal::TransExists(gid);
    if (pg::GetInt(r, 0, 1) != n) return UnexpectedShape("create (branch rows)");
    return Status::Ok();
  };
  op.complete = done;
  SubmitWrite(std::move(op), done);
}

void PostgresStore::Update(TransUpdate u, DoneCallback done) {
  // Rows addressed twice are merged (a later present field wins), as if applied one after another.
  std::vector<TransUpdate::BranchUpdate> rows;
  for (auto& b : u.branches) {
    auto it = std::find_if(rows.begin(), rows.end(), [&](const TransUpdate::BranchUpdate& x) {
      return x.branch_id == b.branch_id && x.op == b.op;
    });
    if (it == rows.end()) {
      rows.push_back(std::move(b));
      continue;
    }
    if (b.status) it->status = b.status;
    if (b.attempts) it->attempts = b.attempts;
    if (b.last_error) it->last_error = std::move(b.last_error);
    if (b.finish_time_ms) it->finish_time_ms = b.finish_time_ms;
    it->new_attempts.insert(it->new_attempts.end(), b.new_attempts.begin(), b.new_attempts.end());
  }
  WriteOp op;
  op.stmt = kUpdate;
  std::optional<std::string> status, options;
  if (u.new_status) status = std::string(core::ToString(*u.new_status));
  if (u.options) options = core::EncodeOptionsJson(*u.options);
  op.params.Text(u.gid)
      .Text(std::string(core::ToString(u.expected_status)))
      .OptText(status)
      .OptText(u.rollback_reason)
      .OptText(u.custom_data)
      .OptText(options)
      .OptInt(u.next_cron_time_ms)
      .OptInt(u.next_cron_interval_ms)
      .OptInt(u.retry_count)
      .OptInt(u.finish_time_ms)
      .OptInt(u.rollback_time_ms)
      .Int(u.update_time_ms);
  ArrayBuilder bid, opn, st, at, le, ft;
  for (const auto& b : rows) {
    bid.Text(b.branch_id);
    opn.Text(b.op);
    if (b.status) {
      st.Text(core::ToString(*b.status));
    } else {
      st.Null();
    }
    at.OptInt(b.attempts);
    le.OptText(b.last_error);
    ft.OptInt(b.finish_time_ms);
  }
  for (ArrayBuilder* a : {&bid, &opn, &st, &at, &le, &ft}) op.params.Text(std::move(*a).Finish());
  op.params.OptText(u.expected_owner).OptInt(u.due_by_ms).OptText(u.owner).OptInt(u.lease_until_ms);
  AddAttemptArrays(rows, op.params);  // $23..$30
  if (!op.params.nul_free()) op.pre = NulByte(u.gid);
  op.parse = [gid = u.gid, expected = u.expected_status,
              n = static_cast<int64_t>(rows.size())](const PGresult* r) {
    if (PQntuples(r) != 1 || PQnfields(r) != 5) return UnexpectedShape("update");
    if (pg::IsNull(r, 0, 2)) return internal::TransNotFound(gid);
    std::string before = pg::GetBytes(r, 0, 2);
    auto actual = core::ParseGlobalStatus(before);
    if (!actual) return internal::CorruptRow("status '" + before + "' of " + gid);
    if (*actual != expected) return internal::ConflictStatus(gid, expected, *actual);
    if (!pg::IsNull(r, 0, 3)) {
      return internal::BranchNotFound(gid, pg::GetBytes(r, 0, 3), pg::GetBytes(r, 0, 4));
    }
    if (pg::GetInt(r, 0, 0) == 0) {
      // The status matched this statement's snapshot, but the owner or lease condition did not,
      // or another coordinator changed the row before this UPDATE could lock it.
      return Status::Conflict("transaction " + gid + " changed concurrently, expected " +
                              std::string(core::ToString(expected)));
    }
    if (pg::GetInt(r, 0, 1) != n) return UnexpectedShape("update (branch rows)");
    return Status::Ok();
  };
  op.complete = done;
  SubmitWrite(std::move(op), done);
}

void PostgresStore::AddBranches(std::string gid, core::GlobalStatus expected_status,
                                std::vector<core::BranchRow> rows, DoneCallback done) {
  WriteOp op;
  op.stmt = kAddBranches;
  op.params.Text(gid).Text(std::string(core::ToString(expected_status)));
  AddBranchArrays(rows, op.params);
  if (!op.params.nul_free()) op.pre = NulByte(gid);
  op.parse = [gid, expected_status, n = static_cast<int64_t>(rows.size())](const PGresult* r) {
    if (PQntuples(r) != 1 || PQnfields(r) != 4) return UnexpectedShape("add branches");
    if (pg::IsNull(r, 0, 0)) return internal::TransNotFound(gid);
    std::string status = pg::GetBytes(r, 0, 0);
    auto actual = core::ParseGlobalStatus(status);
    if (!actual) return internal::CorruptRow("status '" + status + "' of " + gid);
    if (*actual != expected_status) return internal::ConflictStatus(gid, expected_status, *actual);
    if (!pg::IsNull(r, 0, 1)) {
      return internal::BranchExists(gid, pg::GetBytes(r, 0, 1), pg::GetBytes(r, 0, 2));
    }
    if (pg::GetInt(r, 0, 3) != n) return UnexpectedShape("add branches (rows)");
    return Status::Ok();
  };
  op.complete = done;
  SubmitWrite(std::move(op), done);
}

void PostgresStore::ClaimDue(int64_t now_ms, int limit, int64_t lease_until_ms, std::string owner,
                             Callback<std::vector<std::string>> done) {
  if (Status s = internal::ValidateClaimLimit("claim", limit); !s.ok()) return done(std::move(s));
  auto gids = std::make_shared<std::vector<std::string>>();
  WriteOp op;
  op.stmt = kClaimDue;
  op.params.Int(now_ms).Int(limit).Int(lease_until_ms).Text(std::move(owner));
  if (!op.params.nul_free()) op.pre = Status::InvalidArgument("claim owner contains a NUL byte");
  op.parse = [gids](const PGresult* r) {
    if (PQnfields(r) != 1) return UnexpectedShape("claim");
    gids->clear();
    for (int i = 0; i < PQntuples(r); ++i) gids->push_back(pg::GetBytes(r, i, 0));
    return Status::Ok();
  };
  op.complete = internal::ValueWhenCommitted(gids, done);
  SubmitWrite(std::move(op), [done](Status s) { done(std::move(s)); });
}

// Business keys (store/postgres/keys.h).
void PostgresStore::AcquireKeys(std::string gid, bool acquire, int64_t wait_until_ms,
                                Callback<core::KeyState> done) {
  auto state = std::make_shared<core::KeyState>();
  WriteOp op;
  op.stmt = kAcquireKeys;
  op.params.Text(gid).Int(acquire ? 1 : 0).Int(wait_until_ms);
  if (!op.params.nul_free()) op.pre = internal::TransNotFound(gid);
  op.parse = [state](const PGresult* r) {
    if (PQntuples(r) != 1 || PQnfields(r) != 4) return UnexpectedShape("acquire keys");
    state->held = pg::GetBool(r, 0, 0);
    state->waiting_for = pg::IsNull(r, 0, 1) ? std::string() : pg::GetBytes(r, 0, 1);
    state->waiting_key = pg::IsNull(r, 0, 2) ? std::string() : pg::GetBytes(r, 0, 2);
    state->contended = pg::GetBool(r, 0, 3);
    return Status::Ok();
  };
  op.complete = [state, done](Status s) {
    if (s.ok()) {
      done(std::move(*state));
    } else {
      done(std::move(s));
    }
  };
  SubmitWrite(std::move(op), [done](Status s) { done(std::move(s)); });
}

void PostgresStore::WakeKeyWaiters(int64_t now_ms, int limit,
                                   Callback<std::vector<std::string>> done) {
  if (Status s = internal::ValidateClaimLimit("wake", limit); !s.ok()) return done(std::move(s));
  auto gids = std::make_shared<std::vector<std::string>>();
  WriteOp op;
  op.stmt = kWakeKeys;
  op.params.Int(now_ms).Int(limit);
  op.parse = [gids](const PGresult* r) {
    if (PQnfields(r) != 1) return UnexpectedShape("wake key waiters");
    gids->clear();
    for (int i = 0; i < PQntuples(r); ++i) gids->push_back(pg::GetBytes(r, i, 0));
    return Status::Ok();
  };
  op.complete = [gids, done](Status s) {
    if (s.ok()) {
      done(std::move(*gids));
    } else {
      done(std::move(s));
    }
  };
  SubmitWrite(std::move(op), [done](Status s) { done(std::move(s)); });
}

void PostgresStore::ResetNextCronTime(std::string gid, int64_t now_ms, DoneCallback done) {
  WriteOp op;
  op.stmt = kResetNext;
  op.params.Text(gid).Int(now_ms);
  if (!op.params.nul_free()) op.pre = internal::TransNotFound(gid);
  op.parse = [gid](const PGresult* r) {
    if (PQntuples(r) != 1 || PQnfields(r) != 2) return UnexpectedShape("reset next_cron_time");
    if (pg::GetInt(r, 0, 0) == 0) return internal::TransNotFound(gid);
    return Status::Ok();  // changed, or final and left unchanged
  };
  op.complete = done;
  SubmitWrite(std::move(op), done);
}

void PostgresStore::ResetCronTime(int64_t now_ms, int64_t timeout_ms, int limit,
                                  Callback<int64_t> done) {
  if (Status s = internal::ValidateClaimLimit("reset cron time", limit); !s.ok()) {
    return done(std::move(s));
  }
  auto changed = std::make_shared<int64_t>(0);
  WriteOp op;
  op.stmt = kResetCron;
  op.params.Int(now_ms).Int(internal::SaturatingAdd(now_ms, timeout_ms)).Int(limit);
  op.parse = [changed](const PGresult* r) {
    if (PQntuples(r) != 1 || PQnfields(r) != 1) return UnexpectedShape("reset cron time");
    *changed = pg::GetInt(r, 0, 0);
    return Status::Ok();
  };
  op.complete = internal::ValueWhenCommitted(changed, done);
  SubmitWrite(std::move(op), [done](Status s) { done(std::move(s)); });
}

void PostgresStore::KvPut(std::string cat, std::string k, std::string v, int64_t expected_version,
                          int64_t now_ms, DoneCallback done) {
  if (Status s = internal::ValidateKvPut(cat, k, expected_version); !s.ok()) {
    return done(std::move(s));
  }
  WriteOp op;
  op.params.Text(cat).Text(k).Text(std::move(v));
  if (expected_version == 0) {
    op.stmt = kKvInsert;
    op.params.Int(now_ms);
  } else {
    op.stmt = kKvUpdate;
    op.params.Int(expected_version).Int(now_ms);
  }
  if (!op.params.nul_free()) {
    op.pre =
        Status::InvalidArgument("kv: a value contains a NUL byte, which PostgreSQL cannot store");
  }
  op.parse = [cat, k, expected_version](const PGresult* r) {
    if (PQntuples(r) != 1 || PQnfields(r) != 1) return UnexpectedShape("kv put");
    if (pg::GetInt(r, 0, 0) == 1) return Status::Ok();
    if (expected_version == 0) return internal::KvExists(cat, k);
    return internal::KvVersionMismatch(cat, k, expected_version);
  };
  op.complete = done;
  SubmitWrite(std::move(op), done);
}

void PostgresStore::KvDelete(std::string cat, std::string k, DoneCallback done) {
  WriteOp op;
  op.stmt = kKvDelete;
  op.params.Text(cat).Text(k);
  if (!op.params.nul_free()) op.pre = internal::KvNotFound(cat, k);
  op.parse = [cat, k](const PGresult* r) {
    if (PQntuples(r) != 1 || PQnfields(r) != 1) return UnexpectedShape("kv delete");
    if (pg::GetInt(r, 0, 0) == 0) return internal::KvNotFound(cat, k);
    return Status::Ok();
  };
  op.complete = done;
  SubmitWrite(std::move(op), done);
}

void PostgresStore::SubmitWrite(WriteOp op, const std::function<void(Status)>& reject) {
  Status refused;
  {
    std::lock_guard lock(write_mu_);
    if (write_stopping_) {
      refused = Status::Unavailable("store closed");
    } else if (connected_writers_.load() == 0) {
      refused = Status::Unavailable("postgres store " + display_ +
                                    ": no writer connection, reconnecting" +
                                    (writer_error_.empty() ? "" : " (" + writer_error_ + ")"));
    } else if (write_queue_.size() >= o_.max_queued_writes) {
      refused = Status::Unavailable("store write queue full (" +
                                    std::to_string(o_.max_queued_writes) + " operations)");
    } else {
      write_queue_.push_back(std::move(op));
      queued_writes_.store(write_queue_.size(), std::memory_order_relaxed);
    }
  }
  if (!refused.ok()) return reject(std::move(refused));
  write_cv_.notify_one();
}

void PostgresStore::FailQueuedWrites(const Status& s) {
  std::deque<WriteOp> failed;
  {
    std::lock_guard lock(write_mu_);
    failed.swap(write_queue_);
    queued_writes_.store(0, std::memory_order_relaxed);
  }
  for (auto& op : failed) op.complete(s);
}

void PostgresStore::WriterLoop(std::unique_ptr<PgConn> conn) {
  Backoff backoff;
  std::vector<WriteOp> batch;
  batch.reserve(static_cast<size_t>(o_.max_batch_ops));
  auto drop = [&] {
    conn.reset();
    connected_writers_.fetch_sub(1);
  };
  for (;;) {
    if (conn == nullptr) {
      {
        std::lock_guard lock(write_mu_);
        if (write_stopping_ && (write_queue_.empty() || connected_writers_.load() > 0)) break;
      }
      auto c = Connect(/*writer=*/true);
      if (c.ok()) {
        if (backoff.failures() > 0) {
          spdlog::info("postgres store {}: writer reconnected after {} failed attempts", display_,
                       backoff.failures());
        }
        conn = std::move(c).value();
        connected_writers_.fetch_add(1);
        backoff.Reset();
        continue;
      }
      const Status& why = c.status();
      if (backoff.failures() == 0) {
        spdlog::error("postgres store: writer cannot reconnect: {}", why.message());
      }
      bool stopping = false;
      {
        std::lock_guard lock(write_mu_);
        writer_error_ = why.message();
        stopping = write_stopping_;
      }
      if (connected_writers_.load() == 0) {
        FailQueuedWrites(
            Status::Unavailable("postgres store: no writer connection: " + why.message()));
      }
      if (stopping) break;
      std::unique_lock lock(stop_mu_);
      stop_cv_.wait_for(lock, backoff.Next(), [&] { return stop_; });
      continue;
    }
    {
      std::unique_lock lock(write_mu_);
      write_cv_.wait(lock, [&] { return write_stopping_ || !write_queue_.empty(); });
      if (write_queue_.empty()) break;  // stopping, and everything queued is done
      size_t n = std::min(write_queue_.size(), static_cast<size_t>(o_.max_batch_ops));
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(write_queue_.front()));
        write_queue_.pop_front();
      }
      queued_writes_.store(write_queue_.size(), std::memory_order_relaxed);
    }
    if (!conn->CheckIdle()) {
      // Closed while idle (server restart, pg_terminate_backend, network): nothing of this batch
      // was sent, so connect again at once and run it there.
      spdlog::warn("postgres store {}: writer connection was closed while idle; reconnecting",
                   display_);
      drop();
      auto c = Connect(/*writer=*/true);
      if (c.ok()) {
        conn = std::move(c).value();
        connected_writers_.fetch_add(1);
      } else {
        {
          std::lock_guard lock(write_mu_);
          writer_error_ = c.status().message();
        }
        for (auto& op : batch) op.complete(c.status());
        batch.clear();
        continue;
      }
    }
    RunBatch(*conn, batch);
    batch.clear();
    if (conn->broken()) {
      spdlog::warn("postgres store {}: writer connection lost; reconnecting", display_);
      drop();
    }
  }
  if (conn != nullptr) connected_writers_.fetch_sub(1);
}

void PostgresStore::RunBatch(PgConn& c, std::vector<WriteOp>& batch) {
  const auto batch_start = std::chrono::steady_clock::now();  // the commit latency histogram
  std::vector<Status> results(batch.size());
  std::vector<size_t> todo;  // ops sent to the database, in batch order
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].pre.ok()) {
      todo.push_back(i);
    } else {
      results[i] = batch[i].pre;
    }
  }
  Status batch_error;  // set: every op of `todo` fails with it
  bool committed = false;
  std::vector<Command> cmds;
  cmds.reserve(todo.size() * 3 + 3);
  size_t next = 0;      // index in `todo` of the first op not yet applied
  bool resume = false;  // a transaction is open after a failed op: roll back to its savepoint
  // The first attempt sends the statements bare: each decides its own outcome and raises no error
  // in the normal course, and a savepoint per operation costs two more statements and a
  // subtransaction each. If one does raise an error, the whole transaction is rolled back, that
  // operation alone fails, and the others are sent again, each in its own savepoint.
  bool savepoints = false;
  while (!todo.empty()) {
    cmds.clear();
    if (resume) {
      cmds.push_back(Command::Exec(kRollbackTo));
      cmds.push_back(Command::Exec(kRelease));
    } else {
      cmds.push_back(Command::Exec(kBegin));
    }
    const size_t header = cmds.size();
    for (size_t k = next; k < todo.size(); ++k) {
      const WriteOp& op = batch[todo[k]];
      if (savepoints) cmds.push_back(Command::Exec(kSavepoint));
      cmds.push_back(Command::Exec(op.stmt, &op.params));
      if (savepoints) cmds.push_back(Command::Exec(kRelease));
    }
    cmds.push_back(Command::Exec(kCommit));
    auto r = c.Run(cmds, IoDeadline());
    if (!r.ok()) {
      batch_error = Status(r.status().code(),
                           r.status().message() + "; the batch may or may not have been committed");
      break;
    }
    const std::vector<PgResult>& res = *r;
    auto fail = [&](size_t at, std::string_view what) {
      batch_error = pg::ErrorStatus(res[at].get(), what);
      if (pg::SqlState(res[at].get()) == "25006") c.Discard();  // a standby: find the primary
      std::vector<Command> rb = {Command::Exec(kRollback)};
      (void)c.Run(rb, IoDeadline());
    };
    for (size_t i = 0; i < header && batch_error.ok(); ++i) {
      if (!pg::ResultOk(res[i].get())) fail(i, resume ? "ROLLBACK TO SAVEPOINT" : "BEGIN");
    }
    if (!batch_error.ok()) break;
    const size_t stride = savepoints ? 3 : 1;
    const size_t stmt_at = savepoints ? 1 : 0;
    size_t failed = todo.size();  // none
    size_t pos = header;
    for (size_t k = next; k < todo.size(); ++k, pos += stride) {
      const size_t i = todo[k];
      if (savepoints && !pg::ResultOk(res[pos].get())) {
        fail(pos, "SAVEPOINT");
        break;
      }
      const PGresult* st = res[pos + stmt_at].get();
      if (!pg::ResultOk(st)) {
        if (PQresultStatus(st) != PGRES_FATAL_ERROR) {
          fail(pos + stmt_at, batch[i].stmt);
          break;
        }
        // This op's statement raised an error: the pipeline stopped here. Only this op fails.
        results[i] = pg::ErrorStatus(st, batch[i].stmt);
        if (pg::SqlState(st) == "25006") {
          c.Discard();
          batch_error = results[i];
          break;
        }
        failed = k;
        break;
      }
      try {
        results[i] = batch[i].parse(st);
      } catch (const std::exception& e) {
        results[i] = Status::Internal(std::string("store operation threw: ") + e.what());
      }
      if (savepoints && !pg::ResultOk(res[pos + 2].get())) {
        fail(pos + 2, "RELEASE SAVEPOINT");
        break;
      }
    }
    if (!batch_error.ok()) break;
    if (failed != todo.size()) {
      if (savepoints) {
        resume = true;
        next = failed + 1;
        continue;
      }
      // No savepoints: the transaction is lost. Roll it back and run the others again, each in a
      // savepoint; their results of this attempt were never committed.
      std::vector<Command> rb = {Command::Exec(kRollback)};
      auto rolled = c.Run(rb, IoDeadline());
      if (!rolled.ok() || !pg::ResultOk((*rolled)[0].get())) {
        batch_error =
            rolled.ok() ? pg::ErrorStatus((*rolled)[0].get(), "ROLLBACK") : rolled.status();
        break;
      }
      todo.erase(todo.begin() + static_cast<std::ptrdiff_t>(failed));
      savepoints = true;
      continue;
    }
    const PGresult* commit = res.back().get();
    if (!pg::ResultOk(commit)) {
      fail(res.size() - 1, "COMMIT");
      break;
    }
    if (std::string_view(PQcmdStatus(const_cast<PGresult*>(commit))) != "COMMIT") {
      batch_error = Status::Internal(std::string("postgres: COMMIT answered ") +
                                     PQcmdStatus(const_cast<PGresult*>(commit)));
      break;
    }
    committed = true;
    break;
  }
  if (!batch_error.ok()) {
    for (size_t i : todo) results[i] = batch_error;
  } else if (committed) {
    uint64_t ok_ops = 0;
    for (size_t i : todo) ok_ops += results[i].ok() ? 1 : 0;
    commits_.fetch_add(1, std::memory_order_relaxed);
    write_ops_.fetch_add(ok_ops, std::memory_order_relaxed);
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - batch_start;
    histograms_.batch_ops.Observe(static_cast<double>(todo.size()));
    histograms_.commit_seconds.Observe(took.count());
  }
  // Only now, after the commit (or the failure), do the callbacks run.
  for (size_t i = 0; i < batch.size(); ++i) {
    try {
      batch[i].complete(std::move(results[i]));
    } catch (const std::exception& e) {
      spdlog::error("postgres store: a write callback threw: {}", e.what());
    } catch (...) {
      spdlog::error("postgres store: a write callback threw");
    }
  }
}

}  // namespace dtx::store::pg_internal
