// The Standard Webhooks signature (https://www.standardwebhooks.com), the one implementation
// behind the coordinator's signed notification attempts and libdtx's verifier (dtx::SignWebhook,
// dtx::VerifyWebhook): "v1," + base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>")), where key is
// the base64-decoded part of the secret after "whsec_". Pure functions (OpenSSL's HMAC);
// thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dtx::util {

// The key of a "whsec_" + base64 secret; nullopt if the secret is not of that form or the key is
// empty.
std::optional<std::string> WebhookSecretKey(std::string_view secret);

// "v1,<signature>" for `secret`; nullopt if WebhookSecretKey refuses the secret.
std::optional<std::string> WebhookSignature(std::string_view secret, std::string_view id,
                                            int64_t timestamp_s, std::string_view body);

}  // namespace dtx::util
