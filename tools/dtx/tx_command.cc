#include "tools/dtx/tx_command.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/client.h"
#include "http/server.h"
#include "tools/dtx/admin_client.h"

// GCC 12: a false -Wmismatched-new-delete for Asio's awaitable frames (see engine_internal.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dtx::tools {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;

struct TxFlags {
  Common c;
  // list
  std::string status, trans_type, gid_prefix, position;
  bool stuck = false;
  bool waiting = false;
  std::string resolved;  // "", "yes", "no"
  int limit = 50;
  // show / actions
  std::string gid, reason, expect_status, branch_id, op;
};

// A transaction's business_keys object (the admin API's, as GET query's), or null.
const json::object* BusinessKeys(const json::value& t) {
  if (!t.is_object()) return nullptr;
  const json::value* k = t.get_object().if_contains("business_keys");
  return k && k->is_object() ? &k->get_object() : nullptr;
}

// "waiting for GID on KEY" for a transaction whose business keys are not held (it has not started:
// another transaction holds one of its keys or queues ahead of it); nullopt otherwise.
std::optional<std::string> WaitingFor(const json::value& t) {
  const json::object* k = BusinessKeys(t);
  if (k == nullptr || !k->contains("waiting_for")) return std::nullopt;
  const json::value& w = *k;
  if (S(w, "held") == "yes") return std::nullopt;
  if (S(w, "waiting_for").empty()) return std::string("waiting for its business keys");
  return fmt::format("waiting for {} on {}", S(w, "waiting_for"), S(w, "waiting_key"));
}

// The "keys:" line of `dtx tx show`: the keys, then held / waiting for GID on KEY / released.
void PrintKeys(const json::value& t) {
  const json::object* k = BusinessKeys(t);
  if (k == nullptr) return;
  std::vector<std::string> keys;
  if (const json::value* a = k->if_contains("keys"); a && a->is_array()) {
    for (const auto& key : a->as_array()) {
      if (key.is_string()) keys.emplace_back(key.as_string());
    }
  }
  const json::value& w = *k;
  std::string state;
  if (S(w, "released") == "yes") {
    state = "released (final)";
  } else if (S(w, "held") == "yes") {
    state = "held";
  } else if (std::optional<std::string> wf = WaitingFor(t)) {
    state = *wf;
  }
  std::printf("keys:       %s%s%s\n", fmt::format("{}", fmt::join(keys, ", ")).c_str(),
              state.empty() ? "" : "  ", state.c_str());
}

int RunList(const TxFlags& f) {
  std::string q = fmt::format("transactions?limit={}", f.limit);
  auto add = [&](const char* k, const std::string& v) {
    if (!v.empty()) q += fmt::format("&{}={}", k, http::UrlEncode(v));
  };
  add("status", f.status);
  add("trans_type", f.trans_type);
  add("gid_prefix", f.gid_prefix);
  add("position", f.position);
  if (f.stuck) q += "&stuck=1";
  if (f.waiting) q += "&waiting=1";
  if (f.resolved == "yes") q += "&resolved=1";
  if (f.resolved == "no") q += "&resolved=0";
  int rc = 0;
  auto v = Fetch(f.c, "GET", q, "", &rc);
  if (!v) return rc;
  std::printf("%-34s %-5s %-10s %-19s %7s %-9s %s\n", "GID", "TYPE", "STATUS", "CREATED (UTC)",
              "RETRIES", "FLAGS", "REASON / WAITING FOR");
  for (const auto& t : v->at("transactions").as_array()) {
    std::vector<std::string> flags;
    if (S(t, "stuck") == "yes") flags.emplace_back("stuck");
    if (S(t, "resolved") == "yes") flags.emplace_back("res");
    std::string note = S(t, "rollback_reason");
    if (std::optional<std::string> w = WaitingFor(t)) {
      flags.emplace_back("wait");
      note = *w;
    }
    std::printf("%-34s %-5s %-10s %-19s %7lld %-9s %s\n", Cut(S(t, "gid"), 34).c_str(),
                S(t, "trans_type").c_str(), S(t, "status").c_str(),
                Time(I(t, "create_time_ms")).c_str(), static_cast<long long>(I(t, "retries")),
                fmt::format("{}", fmt::join(flags, ",")).c_str(), Cut(note, 60).c_str());
  }
  PrintNextPosition(*v);
  return 0;
}

// The call history of every branch row: its newest calls (the server keeps 20 per row).
void PrintCalls(const json::array& branches) {
  bool header = false;
  for (const auto& b : branches) {
    const json::object& o = b.as_object();
    auto it = o.find("calls");
    if (it == o.end() || !it->value().is_array()) continue;
    for (const auto& a : it->value().as_array()) {
      if (!header) {
        std::printf("\n%-8s %-10s %5s  %-19s %4s %-8s %8s  %s\n", "BRANCH", "OP", "CALL",
                    "WHEN (UTC)", "HTTP", "RESULT", "LATENCY", "ERROR");
        header = true;
      }
      const int64_t http = I(a, "http_status");
      std::printf("%-8s %-10s %5lld  %-19s %4s %-8s %5lld ms  %s\n", S(b, "branch_id").c_str(),
                  S(b, "op").c_str(), static_cast<long long>(I(a, "seq")),
                  Time(I(a, "time_ms")).c_str(), http > 0 ? std::to_string(http).c_str() : "-",
                  S(a, "result").c_str(), static_cast<long long>(I(a, "latency_ms")),
                  Cut(S(a, "error"), 60).c_str());
    }
  }
}

int RunShow(const TxFlags& f) {
  int rc = 0;
  auto v = Fetch(f.c, "GET", "transactions/" + http::UrlEncode(f.gid), "", &rc);
  if (!v) return rc;
  const json::value& t = v->at("transaction");
  std::printf("gid:        %s\n", S(t, "gid").c_str());
  std::printf("type:       %s\n", S(t, "trans_type").c_str());
  std::printf("status:     %s%s%s\n", S(t, "status").c_str(),
              S(t, "stuck") == "yes" ? "  (stuck)" : "",
              S(t, "resolved") == "yes" ? "  (resolved)" : "");
  std::printf("created:    %s UTC\n", Time(I(t, "create_time_ms")).c_str());
  const std::string status = S(t, "status");
  if (status == "succeed" || status == "failed") {  // final: never woken again, no next try
    std::printf("finished:   %s UTC (retries %lld)\n", Time(I(t, "finish_time_ms")).c_str(),
                static_cast<long long>(I(t, "retries")));
  } else if (WaitingFor(t)) {
    // Asleep until its keys are released; the stored time is only a late re-check.
    std::printf("next try:   when its business keys are free (retries %lld)\n",
                static_cast<long long>(I(t, "retries")));
  } else {
    std::printf("next try:   %s UTC (retries %lld)\n", Time(I(t, "next_cron_time_ms")).c_str(),
                static_cast<long long>(I(t, "retries")));
  }
  if (!S(t, "rollback_reason").empty()) {
    std::printf("reason:     %s\n", Cut(S(t, "rollback_reason"), 200).c_str());
  }
  PrintKeys(t);
  std::printf("\n%-8s %-10s %-8s %8s  %-40s %s\n", "BRANCH", "OP", "STATUS", "ATTEMPTS", "URL",
              "LAST ERROR");
  for (const auto& b : v->at("branches").as_array()) {
    std::printf("%-8s %-10s %-8s %8lld  %-40s %s\n", S(b, "branch_id").c_str(), S(b, "op").c_str(),
                S(b, "status").c_str(), static_cast<long long>(I(b, "attempts")),
                Cut(S(b, "url"), 40).c_str(), Cut(S(b, "last_error"), 60).c_str());
  }
  PrintCalls(v->at("branches").as_array());
  PrintAudit(v->at("audit").as_array());
  return 0;
}

int RunAction(const TxFlags& f, const std::string& action) {
  json::object body{{"reason", f.reason}};
  if (!f.expect_status.empty()) body["expect_status"] = f.expect_status;
  if (!f.branch_id.empty()) body["branch_id"] = f.branch_id;
  if (!f.op.empty()) body["op"] = f.op;
  int rc = 0;
  auto v = Fetch(f.c, "POST", "transactions/" + http::UrlEncode(f.gid) + "/" + action,
                 json::serialize(body), &rc);
  if (!v) return rc;
  std::printf("%s %s: %s -> %s\n", action.c_str(), f.gid.c_str(), S(*v, "status_before").c_str(),
              S(*v, "status_after").c_str());
  return 0;
}

int RunAudit(const TxFlags& f) {
  std::string q = fmt::format("audit?limit={}", f.limit);
  if (!f.gid.empty()) q += "&gid=" + http::UrlEncode(f.gid);
  if (!f.position.empty()) q += "&position=" + http::UrlEncode(f.position);
  int rc = 0;
  auto v = Fetch(f.c, "GET", q, "", &rc);
  if (!v) return rc;
  std::printf("%-19s %-12s %-34s %-8s %-22s %s\n", "WHEN (UTC)", "WHO", "GID", "ACTION", "STATUS",
              "REASON");
  for (const auto& a : v->at("audit").as_array()) {
    std::printf("%-19s %-12s %-34s %-8s %-22s %s\n", Time(I(a, "time_ms")).c_str(),
                Cut(S(a, "who"), 12).c_str(), Cut(S(a, "gid"), 34).c_str(), S(a, "action").c_str(),
                (S(a, "status_before") + " -> " + S(a, "status_after")).c_str(),
                Cut(S(a, "reason"), 60).c_str());
  }
  PrintNextPosition(*v);
  return 0;
}

}  // namespace

void AddTxCommands(CLI::App& app) {
  auto f = std::make_shared<TxFlags>();
  CLI::App* tx = app.add_subcommand("tx", "look at and act on transactions (admin API)");
  tx->require_subcommand(1);

  CLI::App* list = tx->add_subcommand("list", "list transactions, newest first");
  AddCommon(list, f->c);
  list->add_option("--status", f->status, "prepared, submitted, aborting, succeed, failed");
  list->add_option("--type", f->trans_type, "saga, tcc, xa, msg");
  list->add_option("--gid-prefix", f->gid_prefix, "gids starting with this");
  list->add_flag("--stuck", f->stuck, "only unfinished ones retried often or past their timeout");
  list->add_flag("--waiting", f->waiting,
                 "only unfinished ones waiting for their business keys (not started: another "
                 "transaction holds or queues ahead on a key)");
  list->add_option("--resolved", f->resolved, "yes or no")->check(CLI::IsMember({"yes", "no"}));
  list->add_option("--limit", f->limit, "rows (1-500)")->capture_default_str();
  list->add_option("--position", f->position, "continue a listing (printed at its end)");
  Run(list, [f] { return RunList(*f); });

  CLI::App* show = tx->add_subcommand("show", "a transaction, its branches and its audit log");
  AddCommon(show, f->c);
  show->add_option("gid", f->gid, "the transaction")->required();
  Run(show, [f] { return RunShow(*f); });

  const std::vector<std::pair<std::string, std::string>> actions = {
      {"retry", "make it due now (the backoff starts over)"},
      {"stop", "fail it at once, without compensation (DTM's forceStop)"},
      {"abort", "compensate it: saga compensations / tcc cancels run"},
      {"resolve", "mark it as handled (no state change)"},
      {"skip", "mark one branch op done after a manual fix, then continue"}};
  for (const auto& [name, help] : actions) {
    CLI::App* a = tx->add_subcommand(name, help);
    AddCommon(a, f->c);
    a->add_option("gid", f->gid, "the transaction")->required();
    a->add_option("--reason", f->reason, "why (recorded in the audit log)")->required();
    a->add_option("--expect-status", f->expect_status,
                  "act only if the transaction is still in this status");
    if (name == "skip") {
      a->add_option("--branch", f->branch_id, "branch id, e.g. 01")->required();
      a->add_option("--op", f->op,
                    "action, compensate, confirm, cancel (default: the unfinished one)");
    }
    Run(a, [f, action = name] { return RunAction(*f, action); });
  }

  CLI::App* audit = app.add_subcommand("audit", "the operators' audit log, newest first");
  AddCommon(audit, f->c);
  audit->add_option("--gid", f->gid, "only this transaction");
  audit->add_option("--limit", f->limit, "rows (1-1000)")->capture_default_str();
  audit->add_option("--position", f->position, "continue a listing (printed at its end)");
  Run(audit, [f] { return RunAudit(*f); });
}

}  // namespace dtx::tools
