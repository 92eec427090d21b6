// Checks every route applies to a request before it is routed (issue 15): text that the
// coordinator may store or echo must be valid UTF-8, or a later read of it fails (a topic whose
// stored subscriber list no longer parses). JSON bodies are checked by their strict parser; this
// covers what is not JSON: the query string (each key and value, percent-decoded) and the path.
// Pure; thread-safe.
#pragma once

#include <string_view>

#include "api/codec.h"
#include "core/retry_policy.h"
#include "http/server.h"
#include "util/status.h"

namespace dtx::api {

// kInvalidArgument naming the parameter (or the path) and the byte offset of the first ill-formed
// sequence, e.g. "query parameter 'remark' is not valid UTF-8 (byte 0xff at offset 3)".
Status CheckRequestText(const http::Request& req);

// The server's own limits on a decoded transaction request to route `api` (issue 15):
// retry_limit above settings.max_retry_limit -> kInvalidArgument; business_keys on a submit or
// prepare of a workflow -> kUnimplemented (saga, msg, tcc and xa serialize on them).
Status CheckTransRequest(const TransRequest& request, std::string_view api,
                         const core::Settings& settings);

}  // namespace dtx::api
