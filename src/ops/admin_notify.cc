// Notifications through the admin service (ops/admin.h): list and show in the notification API's
// status words (core::NotifyApiStatus), resend with a reason, audited like every operator action.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/notify.h"
#include "ops/admin.h"

// GCC 12: a false -Wmismatched-new-delete for Asio's awaitable frames (see engine_internal.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dtx::ops {

using boost::asio::awaitable;

awaitable<Result<AdminPage>> AdminService::ListNotifications(NotifyListQuery q) {
  AdminListQuery lq;
  lq.trans_type = std::string(core::ToString(core::TransType::kNotify));
  if (!q.status.empty()) {
    std::optional<core::GlobalStatus> stored = core::NotifyStoredStatus(q.status);
    if (!stored) {
      co_return Status::InvalidArgument(
          "status: one of pending, delivered, failed, aborted, prepared");
    }
    lq.status = std::string(core::ToString(*stored));
  }
  lq.limit = q.limit;
  lq.position = q.position;
  Result<AdminPage> page = co_await List(std::move(lq));
  if (!page.ok() || q.status.empty()) co_return page;
  // failed and aborted share the stored status: a page of one may come back short (its position
  // continues the listing), as List's filters do.
  std::erase_if(page->rows,
                [&](const AdminRow& r) { return core::NotifyApiStatus(r.trans) != q.status; });
  co_return page;
}

awaitable<Result<std::optional<TransDetail>>> AdminService::ShowNotification(std::string id) {
  Result<std::optional<TransDetail>> d = co_await Show(std::move(id));
  if (d.ok() && d->has_value() && (*d)->row.trans.trans_type != core::TransType::kNotify) {
    co_return std::optional<TransDetail>();
  }
  co_return d;
}

awaitable<Result<ActionResult>> AdminService::Resend(std::string who, std::string id,
                                                     std::string reason) {
  if (reason.empty()) co_return Status::InvalidArgument("a reason is required");
  if (reason.size() > kMaxReasonBytes) {
    co_return Status::InvalidArgument(fmt::format("reason is over {} bytes", kMaxReasonBytes));
  }
  if (id.empty() || id.size() > core::kMaxGidBytes) {
    co_return Status::InvalidArgument("id is required (at most 128 bytes)");
  }
  auto loaded = co_await engine_.Query(id);
  if (!loaded.ok()) co_return loaded.status();
  if (!loaded->has_value() || (*loaded)->global.trans_type != core::TransType::kNotify) {
    co_return Status::NotFound(fmt::format("no notification with id '{}'", id));
  }
  const std::string before(core::NotifyApiStatus((*loaded)->global));
  Status st = co_await engine_.ResendNotify(id);
  if (!st.ok()) co_return st;
  AuditRecord rec;
  rec.time_ms = clock_.NowMs();
  rec.who = who;
  rec.gid = id;
  rec.action = "resend";
  rec.reason = std::move(reason);
  rec.status_before = before;
  rec.status_after = "pending";
  if (Status a = co_await Record(rec); !a.ok()) {
    spdlog::error("notification {}: resent by {}, but its audit record failed: {}", id, who,
                  a.ToString());
    co_return a;
  }
  spdlog::info("notification {}: operator action resend by {}", id, who);
  if (metrics_) metrics_->RecordOperatorAction("resend");
  co_return ActionResult{rec.status_before, rec.status_after};
}

}  // namespace dtx::ops
