// The PostgreSQL spellings of Msg::DoAndSubmit and BranchBarrier::Call (include/dtx/msg.h,
// include/dtx/barrier.h): part of the optional PostgreSQL library dtx::pg, so that libdtx itself
// does not need libpq.
#include <functional>
#include <string>

#include "dtx/barrier.h"
#include "dtx/barrier_pg.h"
#include "dtx/msg.h"

namespace dtx {

Status BranchBarrier::Call(PgDb& db, const std::function<Status(PgTx&)>& business) {
  DTX_ASSERT(business != nullptr);
  PgTx tx{db.handle()};
  return Call(static_cast<BarrierDb&>(db), [&] { return business(tx); });
}

Status Msg::DoAndSubmit(const std::string& query_prepared_url, PgDb& db,
                        const std::function<Status(PgTx&)>& business) {
  DTX_ASSERT(business != nullptr);
  PgTx tx{db.handle()};
  return DoAndSubmit(query_prepared_url, static_cast<BarrierDb&>(db),
                     [&]() { return business(tx); });
}

Status Msg::DoAndSubmit(const std::string& query_prepared_url, PGconn* conn,
                        const std::function<Status(PgTx&)>& business) {
  PgDb adapter(conn);
  return DoAndSubmit(query_prepared_url, adapter, business);
}

}  // namespace dtx
