// A program written as a user of the installed libdtx writes it: only <dtx/...> headers, linked
// with dtx::dtx / dtx::pg (CMake) or `pkg-config dtx dtx-pg`. Against a real `dtx server` it runs
//   1. a saga whose two steps succeed (both actions called, status succeed),
//   2. a saga whose second step refuses (first action compensated, status failed),
//   3. a TCC of two branches (both tries, then both confirms; status succeed),
//   4. a saga definition put and submitted by name with a business key (dtx/saga_def.h), and a
//      TCC with a business key; keys over the limit refused before sending,
//   5. with a PostgreSQL URL: the barrier on PostgreSQL (dtx::pg): a duplicate call runs once.
// Usage: dtx-consumer SERVER_API_URL [POSTGRES_URL]. Exit 0 when every check holds, 1 otherwise.
#include <dtx/barrier.h>
#include <dtx/barrier_pg.h>
#include <dtx/business_keys.h>
#include <dtx/client.h>
#include <dtx/participant.h>
#include <dtx/saga.h>
#include <dtx/saga_def.h>
#include <dtx/status.h>
#include <dtx/tcc.h>
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

int failures = 0;

void Check(bool ok, const std::string& what) {
  std::printf("[%s] %s\n", ok ? "ok" : "WRONG", what.c_str());
  if (!ok) ++failures;
}

// Counts calls per path; every handler answers success except /refuse.
class Counters {
 public:
  void Hit(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_[path];
  }
  int Of(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_[path];
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> calls_;
};

void RegisterHandlers(dtx::ParticipantServer& server, Counters& counters) {
  for (const char* path :
       {"/pay", "/pay-undo", "/ship", "/ship-undo", "/try", "/confirm", "/cancel"}) {
    server.Handle("*", path, [&counters](const dtx::BranchRequest& r) {
      counters.Hit(r.path + ":" + r.gid);
      return dtx::BranchResult::Success();
    });
  }
  server.Handle("*", "/refuse", [&counters](const dtx::BranchRequest& r) {
    counters.Hit(r.path + ":" + r.gid);
    return dtx::BranchResult::Failure("out of stock");
  });
}

std::string FinalStatus(dtx::Client& client, const std::string& gid) {
  dtx::Result<dtx::TransactionInfo> info = client.WaitFinal(gid, std::chrono::seconds(30));
  return info.ok() ? info->status : info.status().ToString();
}

void RunSagas(dtx::Client& client, const std::string& svc, Counters& counters) {
  dtx::Saga ok_saga(client, "");
  ok_saga.Add(svc + "/pay", svc + "/pay-undo", R"({"amount":30})")
      .Add(svc + "/ship", svc + "/ship-undo", R"({"qty":1})");
  dtx::Status s = ok_saga.Submit();
  Check(s.ok(), "saga submitted: " + s.ToString());
  const std::string gid = ok_saga.gid();
  Check(FinalStatus(client, gid) == "succeed", "saga " + gid + " succeeded");
  Check(counters.Of("/pay:" + gid) == 1 && counters.Of("/ship:" + gid) == 1,
        "both actions ran once");

  dtx::Saga bad_saga(client, "");
  bad_saga.Add(svc + "/pay", svc + "/pay-undo", R"({"amount":30})")
      .Add(svc + "/refuse", svc + "/ship-undo", R"({"qty":1})");
  s = bad_saga.Submit();
  Check(s.ok(), "failing saga submitted: " + s.ToString());
  const std::string bad = bad_saga.gid();
  Check(FinalStatus(client, bad) == "failed", "saga " + bad + " failed");
  Check(counters.Of("/pay-undo:" + bad) == 1, "its first step was compensated");
}

void RunTcc(dtx::Client& client, const std::string& svc, Counters& counters) {
  dtx::TccOptions options;
  options.wait_result = true;
  std::string gid;
  dtx::Status s = dtx::TccGlobalTransaction(client, "", options, [&](dtx::Tcc& tcc) {
    gid = tcc.gid();
    auto r = tcc.CallBranch(R"({"amount":10})", svc + "/try", svc + "/confirm", svc + "/cancel");
    if (!r.ok()) return r.status();
    return tcc.CallBranch(R"({"amount":20})", svc + "/try", svc + "/confirm", svc + "/cancel")
        .status();
  });
  Check(s.ok(), "tcc " + gid + " committed: " + s.ToString());
  Check(FinalStatus(client, gid) == "succeed", "tcc succeeded");
  Check(counters.Of("/try:" + gid) == 2 && counters.Of("/confirm:" + gid) == 2,
        "two tries, two confirms");
}

void RunByNameWithKeys(dtx::Client& client, const std::string& svc, Counters& counters) {
  dtx::SagaDefinitions defs(client);
  const std::string def =
      R"({"services":{"svc":")" + svc +
      R"("},"steps":[{"name":"pay","action":"{svc}/pay","compensate":"{svc}/pay-undo"},)"
      R"({"name":"ship","action":"{svc}/ship"}]})";
  dtx::Result<dtx::SagaDefinitionPut> put = defs.Put("consumer-order", def);
  Check(put.ok() && put->version >= 1,
        "saga definition put: " + (put.ok() ? std::string("ok") : put.status().ToString()));
  dtx::SagaByName order(client, "consumer-order");
  order.SetInput(R"({"order":1})").SetBusinessKeys({"consumer:account:1"}).SetWaitResult(true);
  dtx::Status s = order.Submit();
  Check(s.ok() && !order.gid().empty(), "saga by name with a business key: " + s.ToString());
  Check(counters.Of("/ship:" + order.gid()) == 1, "its steps ran");

  dtx::TccOptions options;
  options.wait_result = true;
  options.business_keys = {"consumer:account:1"};
  std::string gid;
  s = dtx::TccGlobalTransaction(client, "", options, [&](dtx::Tcc& tcc) {
    gid = tcc.gid();
    return tcc.CallBranch("{}", svc + "/try", svc + "/confirm", svc + "/cancel").status();
  });
  Check(s.ok() && FinalStatus(client, gid) == "succeed", "keyed tcc: " + s.ToString());
  std::vector<std::string> too_many(dtx::kMaxBusinessKeys + 1, "k");
  for (size_t i = 0; i < too_many.size(); ++i) too_many[i] += std::to_string(i);
  Check(dtx::CheckBusinessKeys(too_many).code() == dtx::Code::kInvalidArgument,
        "17 keys refused client-side");
}

void RunPgBarrier(const std::string& pg_url) {
  PGconn* conn = PQconnectdb(pg_url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    Check(false, std::string("connect to PostgreSQL: ") + PQerrorMessage(conn));
    PQfinish(conn);
    return;
  }
  dtx::PgDb db(conn, {.table = "dtx_consumer.barrier"});
  dtx::Status s = dtx::EnsureBarrierTable(db);
  Check(s.ok(), "barrier table on PostgreSQL: " + s.ToString());
  const std::string gid =
      "consumer-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  int runs = 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto barrier = dtx::BranchBarrier::Create("saga", gid, "01", "action");
    Check(barrier.ok(), "barrier created");
    if (!barrier.ok()) break;
    s = barrier->Call(db, [&](dtx::PgTx&) {
      ++runs;
      return dtx::Status::Ok();
    });
    Check(s.ok(), "barrier call: " + s.ToString());
  }
  Check(runs == 1, "a duplicate branch call runs the business code once");
  PQfinish(conn);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s SERVER_API_URL [POSTGRES_URL]\n", argv[0]);
    return 2;
  }
  dtx::Client client(argv[1]);
  Counters counters;
  dtx::ParticipantServer server;
  RegisterHandlers(server, counters);
  dtx::Status s = server.Start();
  if (!s.ok()) {
    std::fprintf(stderr, "participant server: %s\n", s.ToString().c_str());
    return 1;
  }
  RunSagas(client, server.base_url(), counters);
  RunTcc(client, server.base_url(), counters);
  RunByNameWithKeys(client, server.base_url(), counters);
  if (argc > 2 && argv[2][0] != '\0') RunPgBarrier(argv[2]);
  server.Stop();
  std::printf("%s\n", failures == 0 ? "consumer: all checks passed" : "consumer: FAILED");
  return failures == 0 ? 0 : 1;
}
