// The notification API (docs/notifications.md), a dtx extension under /api/dtx/notify:
//   POST /api/dtx/notify                  create (idempotent by id)
//   POST /api/dtx/notify/prepare          create two-phase (prepared, with query_prepared)
//   POST /api/dtx/notify/submit|abort     {"id"}
//   POST /api/dtx/notify/{id}/resend
//   GET  /api/dtx/notify/{id}             one, with its attempt log
//   GET  /api/dtx/notify?status=&limit=&position=
// Every request is validated before anything is stored. Runs on the HTTP server's I/O threads.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <string>
#include <string_view>

#include "core/model.h"
#include "core/notify.h"
#include "engine/engine.h"
#include "http/server.h"
#include "http/url_policy.h"
#include "util/status.h"

namespace dtx::api {

inline constexpr std::string_view kNotifyPrefix = "/api/dtx/notify";

bool IsNotifyPath(std::string_view path);

// Answers a request whose path IsNotifyPath; `api` is set to the metrics label. With a
// `url_policy` (the SSRF guard), a notification whose url or query_prepared it refuses is answered
// 400 before anything is stored.
boost::asio::awaitable<http::Response> HandleNotify(engine::Engine& engine,
                                                    const http::Request& request, std::string& api,
                                                    const http::UrlPolicy* url_policy = nullptr);

// Removes the secret from a notification's custom_data (DTM's query and all routes return
// custom_data). No-op for other transactions.
void RedactNotify(core::GlobalTrans& global);

// A validated create/prepare request: the notification to store and its state (which the engine
// encodes into custom_data).
struct NotifyCreate {
  core::TransSnapshot snap;
  core::NotifyState state;
};

// A notification as the read API shows it: id, url, status (core::NotifyApiStatus), created_time,
// attempt_count, next_attempt_time; `with_log` adds preset, schedule, signed and the attempt log.
// Never the secret.
boost::json::object DescribeNotification(const core::TransSnapshot& snap, bool with_log);

// Decodes and validates a create/prepare body into the notification to store (`two_phase`:
// prepared, query_prepared required). kInvalidArgument / kTooLarge on bad input.
Result<NotifyCreate> BuildNotify(std::string_view body, bool two_phase, int64_t default_timeout_ms);

}  // namespace dtx::api
