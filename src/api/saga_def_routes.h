// Saga definitions over HTTP (issue 15 item 1; api/saga_defs.h has the format), a dtx extension:
//   PUT  /api/dtx/sagas/{name}          register a definition -> {"name","version","changed"}; a
//                                       changed definition makes a new version, an identical one
//                                       is a no-op; the 32 newest versions are kept
//   GET  /api/dtx/sagas/{name}          every kept version, oldest first
//   GET  /api/dtx/sagas?position=&limit= the names with their newest version, by last change
//   POST /api/dtx/sagas/{name}/submit   start a saga from the newest version: the answers of
//                                       /api/dtmsvr/submit, plus "gid" on success
// Definitions live in the KV table (cat "saga_definitions", k = name), so every coordinator on one
// PostgreSQL sees them. Runs on the HTTP server's I/O threads.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string>
#include <string_view>

#include "engine/engine.h"
#include "http/server.h"
#include "http/url_policy.h"

namespace dtx::api {

inline constexpr std::string_view kSagaDefPrefix = "/api/dtx/sagas";
inline constexpr const char* kSagaDefCat = "saga_definitions";

bool IsSagaDefPath(std::string_view path);

// Answers a request whose path IsSagaDefPath; `api` is set to the metrics label. `url_policy`
// (--branch-url-allow, may be null) is checked on every step URL at PUT and again at every submit
// by name: 400 naming the step and the URL, nothing stored.
boost::asio::awaitable<http::Response> HandleSagaDefs(engine::Engine& engine,
                                                      const http::Request& request,
                                                      std::string& api,
                                                      const http::UrlPolicy* url_policy);

}  // namespace dtx::api
