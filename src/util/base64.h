// Standard base64 (RFC 4648 §4, with padding): the one implementation behind the DTM codec's
// bin_data, the notification secrets ("whsec_" + base64) and the webhook signatures, in the
// coordinator and in libdtx alike. Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace dtx::util {

std::string Base64Encode(std::string_view bytes);

// The bytes of `text`, which must be standard base64 with padding (length a multiple of 4, '='
// only at the end); nullopt for anything else, including the empty string.
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace dtx::util
