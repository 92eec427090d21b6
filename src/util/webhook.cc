// The Standard Webhooks signature (util/webhook.h).
#include "util/webhook.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util/base64.h"

namespace dtx::util {

std::optional<std::string> WebhookSecretKey(std::string_view secret) {
  constexpr std::string_view kPrefix = "whsec_";
  if (!secret.starts_with(kPrefix)) return std::nullopt;
  std::optional<std::string> key = Base64Decode(secret.substr(kPrefix.size()));
  if (!key || key->empty()) return std::nullopt;
  return key;
}

std::optional<std::string> WebhookSignature(std::string_view secret, std::string_view id,
                                            int64_t timestamp_s, std::string_view body) {
  std::optional<std::string> key = WebhookSecretKey(secret);
  if (!key) return std::nullopt;
  std::string text;
  text.reserve(id.size() + body.size() + 24);
  text.append(id).append(".").append(std::to_string(timestamp_s)).append(".").append(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key->data(), static_cast<int>(key->size()),
           reinterpret_cast<const unsigned char*>(text.data()), text.size(), mac,
           &len) == nullptr) {
    return std::nullopt;
  }
  return "v1," + Base64Encode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

}  // namespace dtx::util
