// The notification attempt call (docs/notifications.md): the request of one attempt with the
// notification's headers, its own timeout and, with a secret, the Standard Webhooks signature
// (util/webhook.h: webhook-id, webhook-timestamp, webhook-signature
// "v1,<base64 HMAC-SHA256 over id.timestamp.body>"). Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/model.h"
#include "core/notify.h"
#include "engine/branch_caller.h"

namespace dtx::engine {

// POST to the row's URL with the payload verbatim; Content-Type application/json unless the
// notification's headers name one; signed at `now_ms` when the state has a secret.
BranchCallSpec BuildNotifyCall(const core::TransSnapshot& snap, const core::NotifyState& state,
                               int64_t now_ms);

}  // namespace dtx::engine
