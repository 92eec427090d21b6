// The two systems of seed 000 §1.1 (本地消息表, the local message table) on dtx transactional
// messages.
//
//   system A, the order service (orders.db):  orders(order_id, item, qty, status, reason),
//       message_applied(msg_id) for the compensation messages it consumes, dtm_barrier.
//       POST /order {"order_id","item","qty"}: the order row and the message "reserve stock for
//       it" commit in ONE local transaction (Msg::DoAndSubmit); the coordinator then delivers the
//       message to B until B has taken it.
//   system B, the stock service (stock.db):   stock(item, available), reservations(order_id, ...),
//       message_applied(msg_id, outcome, compensation_gid), dtm_barrier.
//       POST /stock/reserve (the message's action): in one local transaction, record the message
//       in message_applied and reserve the stock. A duplicate delivery finds its row and does
//       nothing. A business failure (out of stock, unknown item) cannot be retried away: B records
//       the message as "rejected" and, in the same local transaction, commits a NEW message back to
//       A (a compensation message, Msg::DoAndSubmit again); A's /order/compensate cancels the
//       order, once.
//
// Both systems answer their own check-back (GET /order/queryPrepared, /stock/queryPrepared) with
// dtx::QueryPrepared on their database, so a crash between a local commit and its submit never
// loses or invents a message.
//
// Thread-safety: the services are shared by the ParticipantServer worker threads; all state is in
// the databases (one connection per worker, from a pool). How it fails: handlers answer 200, 409
// FAILURE (A's own business refusals) or 500 (retried by the coordinator); nothing throws out.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "dtx/participant.h"
#include "examples/msg_ebay/sql.h"

namespace local_message {

using dtx::Result;
using dtx::Status;

// The message A sends B. `reply_to` is where B sends a compensation message back (A's
// /order/compensate): B needs no configuration of A.
struct Order {
  std::string order_id;
  std::string item;
  int64_t qty = 0;
  std::string reply_to;
};
std::string EncodeOrder(const Order& o);
Result<Order> DecodeOrder(std::string_view json);

struct Endpoints {
  std::string dtx;       // coordinator API
  std::string peer_url;  // A: the stock service's base URL (B answers to the message's reply_to)
  int64_t retry_interval_s = 0;  // of the messages sent (0 = the coordinator's default)
};

// System A.
class OrderService {
 public:
  static Result<std::unique_ptr<OrderService>> Open(const std::string& db_url, Endpoints endpoints);
  void Register(dtx::ParticipantServer& server);
  void SetSelfUrl(std::string url);

 private:
  OrderService(std::string db_url, Endpoints endpoints);
  std::string SelfUrl();

  msg_examples::ConnPool pool_;
  Endpoints endpoints_;
  std::mutex mu_;
  std::string self_url_;
};

// System B.
class StockService {
 public:
  // Initial stock (created once per database): widget 5, gadget 1.
  static Result<std::unique_ptr<StockService>> Open(const std::string& db_url, Endpoints endpoints);
  void Register(dtx::ParticipantServer& server);
  void SetSelfUrl(std::string url);

 private:
  StockService(std::string db_url, Endpoints endpoints);
  std::string SelfUrl();
  dtx::BranchResult Reserve(const dtx::BranchRequest& r);

  msg_examples::ConnPool pool_;
  Endpoints endpoints_;
  std::mutex mu_;
  std::string self_url_;
};

}  // namespace local_message
