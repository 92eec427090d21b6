// Blocking HTTP calls for the SDK's scopes (TCC try, XA action, registerBranch): one exchange on a
// private io_context, a new connection per call (a global transaction makes a handful of calls, to
// different hosts). Thread-safe: no shared state. Fails as http::Client::Send does (kUnavailable,
// kTimeout, ...); an exception inside the exchange becomes kInternal.
#pragma once

#include <string_view>

#include "http/client.h"
#include "util/status.h"

namespace dtx::sdk_internal {

Result<http::ClientResponse> BlockingSend(http::ClientRequest request);

// ASCII case-insensitive equality (header names).
bool IEquals(std::string_view a, std::string_view b);

}  // namespace dtx::sdk_internal
