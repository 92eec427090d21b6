// The four participant services of the order saga (seed 000 §2.2, 命令/协调): order, payment,
// inventory, shipping. Each owns one SQLite database and exposes an action and a compensation that
// the dtx coordinator calls, plus GET /state (a JSON dump of its tables, for the demo).
//
//   service    action (op=action)                       compensation (op=compensate)
//   order      POST /order/create     row 'pending'       POST /order/cancel     row -> 'failed'
//   payment    POST /payment/charge   balance -= amount   POST /payment/refund   balance += amount
//              (409 FAILURE when the balance is too low or the account unknown)
//   inventory  POST /inventory/reserve  stock -= qty      POST /inventory/release  stock += qty
//              (409 FAILURE when out of stock)
//   shipping   POST /shipping/ship    shipment 'created'  POST /shipping/cancel  -> 'cancelled'
//
// Every step of every saga carries the same payload (an OrderRequest as JSON); the order id is the
// gid.
//
// Idempotency: the coordinator may call an action or a compensation several times (retries after a
// timeout), call the compensation of a step whose action failed or never arrived, and deliver an
// action after its compensation. Each service keeps an `applied(gid, op)` table written in the same
// SQLite transaction as the business change (a minimal form of DTM's sub-transaction barrier; the
// full barrier in libdtx comes with a later issue):
//   action:      insert-ignore (gid,'action'); if it existed -> answer SUCCESS without doing
//   anything
//                (a retry, or a compensation came first); else do the business change; a business
//                failure rolls the whole transaction back and answers FAILURE.
//   compensate:  insert-ignore (gid,'compensate'); if it existed -> SUCCESS (a retry). Then
//                insert-ignore (gid,'action'); if that inserted, the action never took effect (null
//                compensation) and can no longer take effect (anti-hanging) -> SUCCESS; else undo.
//
// Thread-safety: handlers run on the ParticipantServer's workers; a Service serializes all access
// to its database with a mutex. How it fails: database errors answer 500 (the coordinator retries).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dtx/participant.h"
#include "examples/order_saga/sqlite_db.h"

namespace order_saga {

// The payload of every step of one order saga.
struct OrderRequest {
  std::string user;
  std::string item;
  int64_t quantity = 0;
  int64_t amount = 0;  // price of the order, in cents
  std::string address;
};
std::string EncodeOrder(const OrderRequest& order);
Result<OrderRequest> DecodeOrder(const std::string& json_text);

// The service names accepted by `serve --service`.
const std::vector<std::string>& ServiceNames();

struct Endpoints {
  std::string action;      // path of the action
  std::string compensate;  // path of the compensation
};
// Paths of a service's saga endpoints (name from ServiceNames()).
Endpoints EndpointsOf(const std::string& service);

class Service {
 public:
  // Opens the database, creates the schema and the initial data (accounts, stock) when missing.
  static Result<std::unique_ptr<Service>> Open(const std::string& name, const std::string& db_path);
  ~Service();

  // Registers the action, the compensation and GET /state on `server` (before server.Start()).
  void Register(dtx::ParticipantServer& server);

  // The service's tables as a JSON object.
  Result<std::string> StateJson();

  struct Business;  // the service-specific part

 private:
  Service(std::string name, std::unique_ptr<Db> db, const Business* business);
  dtx::BranchResult Action(const dtx::BranchRequest& request);
  dtx::BranchResult Compensate(const dtx::BranchRequest& request);

  std::string name_;
  std::mutex mu_;  // guards db_
  std::unique_ptr<Db> db_;
  const Business* business_;
};

}  // namespace order_saga
