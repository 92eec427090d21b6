// The three participant services of the TCC payment (seed 002, Alipay DTS): a member pays a
// merchant; the member system, the merchant system and the points system are independent, each
// with its own database, so no local transaction can span them. Each service exposes Try, Confirm
// and Cancel for the coordinator (and the application's Try call), plus GET /state, a JSON dump of
// its tables.
//
//   service   Try (op=try)                       Confirm (op=confirm)     Cancel (op=cancel)
//   member    balance -= amount, frozen += amount  frozen -= amount       balance += amount,
//             freeze row 'frozen'                  row 'debited'           frozen -= amount,
//             409 FAILURE: unknown member,                                 row 'released'
//             balance too low
//   merchant  credit row 'pending'                 balance += amount,     row 'cancelled'
//             409 FAILURE: unknown or closed       row 'credited'
//             merchant
//   points    points row 'pending'                 member's points +=     row 'cancelled'
//                                                  points, 'credited'
//
// Paths: POST /<service>/try, /<service>/confirm, /<service>/cancel. Every branch of one payment
// carries the same payload, a Payment as JSON. The gid identifies the payment.
//
// Every handler runs its business code through dtx::BranchBarrier (include/dtx/barrier.h) in one
// local transaction with the barrier insert, so a repeated call has no second effect, a Cancel
// whose Try never ran does nothing (null compensation) and a Try arriving after its Cancel does
// nothing (anti-hanging).
//
// Thread-safety: handlers run concurrently on the ParticipantServer's workers; each takes its own
// connection from the service's pool. How it fails: business refusals answer 409 FAILURE (only
// from Try); database errors answer 500 and the coordinator (or the application) retries or
// cancels.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dtx/participant.h"
#include "examples/tcc_payment/sql_conn.h"

namespace tcc_payment {

// The payload of every branch of one payment (amounts in cents).
struct Payment {
  std::string member;
  std::string merchant;
  int64_t amount = 0;
  int64_t points = 0;  // earned by the member when the payment goes through
};
std::string EncodePayment(const Payment& p);
Result<Payment> DecodePayment(const std::string& json_text);

// "member", "merchant", "points".
const std::vector<std::string>& ServiceNames();

class Service {
 public:
  // Opens the service's database (`db_url` as in sql_conn.h; PostgreSQL tables go to schema
  // tcc_payment_<name>), creates the schema, the barrier table and the initial data when missing.
  // `reset` drops the service's tables first (its whole schema on PostgreSQL).
  static Result<std::unique_ptr<Service>> Open(const std::string& name, const std::string& db_url,
                                               bool reset);
  ~Service();

  const std::string& name() const { return name_; }
  // Registers the three operations and GET /state on `server` (before server.Start()).
  void Register(dtx::ParticipantServer& server);
  // The service's tables (business and barrier) as a JSON object {"table":[{row}, ...], ...}.
  Result<std::string> StateJson();

  struct Business;  // the service-specific part

 private:
  Service(std::string name, std::unique_ptr<ConnPool> pool, const Business* business);
  dtx::BranchResult Handle(const std::string& op, const dtx::BranchRequest& request);

  std::string name_;
  std::unique_ptr<ConnPool> pool_;
  const Business* business_;
};

}  // namespace tcc_payment
