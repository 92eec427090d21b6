// The two services of the eBay BASE example (seed 002): the trade service records a trade in its
// own database and, in the same local transaction, commits a transactional message (dtx::Msg::
// DoAndSubmit); the user service consumes the message and updates the seller's and the buyer's
// amounts, idempotently, with a message_applied table in the same local transaction.
//
//   trade service  (trade.db)   "transaction"(xid, seller_id, buyer_id, amount)   + dtm_barrier
//   user service   (user.db/PG) "user"(id, name, amt_sold, amt_bought), message_applied(msg_id),
//                               delivery_log(msg_id, deliveries)
//
// Endpoints (every handler runs on a ParticipantServer worker thread with its own connection):
//   trade: POST /trade {"xid","seller_id","buyer_id","amount"[,"gid"]}   place a trade
//          GET  /trade/queryPrepared?gid=..  the check-back (dtx::QueryPrepared)
//          GET  /state                       the database as JSON
//   user:  POST /user/applyTrade?gid=&branch_id=..  the message's action
//          POST /admin/lose-answers?count=N  the next N deliveries commit, then answer 500 as if
//                                            the answer had been lost (demo: a second delivery)
//          GET  /state
//
// Thread-safety: the services are shared by the worker threads; everything mutable is either in
// the database or atomic. How it fails: handlers answer as PROTOCOL.md §3.3 classifies (200, 409
// FAILURE, 500 retried); nothing throws out of a handler.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "dtx/client.h"
#include "dtx/msg.h"
#include "dtx/participant.h"
#include "examples/msg_ebay/sql.h"

namespace msg_ebay {

using dtx::Result;
using dtx::Status;

struct Trade {
  std::string xid;
  int64_t seller_id = 0;
  int64_t buyer_id = 0;
  int64_t amount = 0;
};
std::string EncodeTrade(const Trade& t);
// kInvalidArgument when a field is missing or has the wrong type.
Result<Trade> DecodeTrade(std::string_view json);

// How the trade service sends its messages.
struct TradeOptions {
  std::string dtx;       // coordinator API, http://host:port/api/dtmsvr
  std::string user_url;  // base URL of the user service; the action is <user_url>/user/applyTrade
  // msg options; unset = the coordinator's defaults.
  std::optional<int64_t> timeout_to_fail_s;
  std::optional<int64_t> retry_interval_s;
};

// Creates the trade tables (and the barrier table) if missing.
Status InitTradeDb(msg_examples::SqlConn& conn);

struct TradeOutcome {
  std::string gid;
  Status status;  // DoAndSubmit's
  dtx::LocalOutcome local = dtx::LocalOutcome::kNotRun;
};
// Places one trade: DoAndSubmit with the business code "insert the transaction row" (a duplicate
// xid or an invalid trade is a constraint violation: the local transaction fails, the message is
// aborted). `gid` empty = a fresh one from the coordinator. `query_prepared` is the trade service's
// check-back URL. `hooks` are for crash tests.
TradeOutcome PlaceTrade(dtx::Client& client, msg_examples::SqlConn& conn,
                        const TradeOptions& options, const std::string& query_prepared,
                        const Trade& trade, std::string gid, dtx::MsgHooks hooks = {});

class TradeService {
 public:
  // Opens the database (sqlite:PATH or postgres://...) and creates the tables.
  static Result<std::unique_ptr<TradeService>> Open(const std::string& db_url,
                                                    TradeOptions options);
  // Registers the endpoints; `self_url` (e.g. http://127.0.0.1:PORT) is read at request time to
  // build the check-back URL, so it may be set after ParticipantServer::Start.
  void Register(dtx::ParticipantServer& server);
  void SetSelfUrl(std::string url);

 private:
  TradeService(std::string db_url, TradeOptions options);
  std::string QueryPreparedUrl();

  msg_examples::ConnPool pool_;
  TradeOptions options_;
  std::mutex mu_;
  std::string self_url_;
};

struct UserOptions {
  int delay_ms = 0;               // sleep after the commit, before answering (a slow consumer)
  double lose_answer_rate = 0.0;  // commit, then answer 500 with this probability
  uint64_t seed = 1;              // of lose_answer_rate's generator
  std::string pg_schema = "msg_ebay_user";
  bool reset = false;  // drop the PostgreSQL schema first
};

// Creates the user tables if missing and the demo users (1 alice, 2 bob, 3 carol, 4 dave).
Status InitUserDb(msg_examples::SqlConn& conn);

class UserService {
 public:
  static Result<std::unique_ptr<UserService>> Open(const std::string& db_url, UserOptions options);
  void Register(dtx::ParticipantServer& server);

  // The action: applies `trade` for message `msg_id` exactly once. Ok also for a duplicate.
  Status Apply(const std::string& msg_id, const Trade& trade);

 private:
  UserService(std::string db_url, UserOptions options);
  bool LoseThisAnswer();

  msg_examples::ConnPool pool_;
  UserOptions options_;
  std::atomic<int> lose_next_{0};
  std::mutex rng_mu_;
  std::mt19937_64 rng_;
};

}  // namespace msg_ebay
