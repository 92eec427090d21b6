#include "tools/dtx/notify_command.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "http/server.h"
#include "tools/dtx/admin_client.h"

namespace dtx::tools {
namespace {

namespace json = boost::json;

struct NotifyFlags {
  Common c;
  std::string status, position, id, reason;
  int limit = 50;
};

int RunList(const NotifyFlags& f) {
  std::string q = fmt::format("notifications?limit={}", f.limit);
  if (!f.status.empty()) q += "&status=" + http::UrlEncode(f.status);
  if (!f.position.empty()) q += "&position=" + http::UrlEncode(f.position);
  int rc = 0;
  auto v = Fetch(f.c, "GET", q, "", &rc);
  if (!v) return rc;
  std::printf("%-34s %-9s %-19s %8s %-19s\n", "ID", "STATUS", "CREATED (UTC)", "ATTEMPTS",
              "NEXT ATTEMPT (UTC)");
  for (const auto& n : v->at("notifications").as_array()) {
    std::printf("%-34s %-9s %-19s %8lld %-19s\n", Cut(S(n, "id"), 34).c_str(),
                S(n, "status").c_str(), Cut(S(n, "created_time"), 19).c_str(),
                static_cast<long long>(I(n, "attempt_count")),
                Time(I(n, "next_attempt_time_ms")).c_str());
  }
  PrintNextPosition(*v);
  return 0;
}

int RunShow(const NotifyFlags& f) {
  int rc = 0;
  auto v = Fetch(f.c, "GET", "notifications/" + http::UrlEncode(f.id), "", &rc);
  if (!v) return rc;
  const json::value& n = v->at("notification");
  std::printf("id:         %s\n", S(n, "id").c_str());
  std::printf("url:        %s\n", S(n, "url").c_str());
  std::printf("status:     %s\n", S(n, "status").c_str());
  std::printf("created:    %s\n", S(n, "created_time").c_str());
  std::printf("schedule:   %s%s\n", S(n, "preset").empty() ? "" : (S(n, "preset") + " ").c_str(),
              n.as_object().contains("schedule") ? json::serialize(n.at("schedule")).c_str() : "");
  std::printf("signed:     %s\n", S(n, "signed").c_str());
  // A next attempt only while one is scheduled (none once delivered, failed or aborted).
  const int64_t next_ms = I(n, "next_attempt_time_ms");
  const std::string next = next_ms > 0 ? fmt::format(", next {} UTC", Time(next_ms)) : "";
  std::printf("attempts:   %lld%s\n", static_cast<long long>(I(n, "attempt_count")), next.c_str());
  std::printf("\n%4s %-19s %6s %8s  %-40s %s\n", "N", "WHEN (UTC)", "HTTP", "LATENCY", "ERROR",
              "RESPONSE");
  if (const json::value* log = n.as_object().if_contains("attempts")) {
    for (const auto& a : log->as_array()) {
      std::printf("%4lld %-19s %6lld %6lldms  %-40s %s\n", static_cast<long long>(I(a, "n")),
                  Time(I(a, "time_ms")).c_str(), static_cast<long long>(I(a, "http_status")),
                  static_cast<long long>(I(a, "latency_ms")), Cut(S(a, "error"), 40).c_str(),
                  Cut(S(a, "response"), 40).c_str());
    }
  }
  PrintAudit(v->at("audit").as_array());
  return 0;
}

int RunResend(const NotifyFlags& f) {
  int rc = 0;
  auto v = Fetch(f.c, "POST", "notifications/" + http::UrlEncode(f.id) + "/resend",
                 json::serialize(json::object{{"reason", f.reason}}), &rc);
  if (!v) return rc;
  std::printf("resend %s: %s -> %s\n", f.id.c_str(), S(*v, "status_before").c_str(),
              S(*v, "status_after").c_str());
  return 0;
}

}  // namespace

void AddNotifyCommands(CLI::App& app) {
  auto f = std::make_shared<NotifyFlags>();
  CLI::App* notify = app.add_subcommand("notify", "look at and resend notifications (admin API)");
  notify->require_subcommand(1);

  CLI::App* list = notify->add_subcommand("list", "list notifications, newest first");
  AddCommon(list, f->c);
  list->add_option("--status", f->status, "pending, delivered, failed, aborted, prepared")
      ->check(CLI::IsMember({"pending", "delivered", "failed", "aborted", "prepared"}));
  list->add_option("--limit", f->limit, "rows (1-500)")->capture_default_str();
  list->add_option("--position", f->position, "continue a listing (printed at its end)");
  Run(list, [f] { return RunList(*f); });

  CLI::App* show = notify->add_subcommand("show", "a notification, its attempt log and audit log");
  AddCommon(show, f->c);
  show->add_option("id", f->id, "the notification")->required();
  Run(show, [f] { return RunShow(*f); });

  CLI::App* resend = notify->add_subcommand(
      "resend", "deliver a delivered or failed notification again, its schedule from the start");
  AddCommon(resend, f->c);
  resend->add_option("id", f->id, "the notification")->required();
  resend->add_option("--reason", f->reason, "why (recorded in the audit log)")->required();
  Run(resend, [f] { return RunResend(*f); });
}

}  // namespace dtx::tools
