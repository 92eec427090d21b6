#include "api/input_checks.h"

#include <fmt/format.h>

#include "util/utf8.h"

namespace dtx::api {

namespace {

Status NotUtf8(std::string_view what, std::string_view decoded, size_t at) {
  return Status::InvalidArgument(fmt::format("{} is not valid UTF-8 (byte 0x{:02x} at offset {})",
                                             what, static_cast<unsigned char>(decoded[at]), at));
}

}  // namespace

Status CheckRequestText(const http::Request& req) {
  const std::string path = http::UrlDecode(req.path);
  if (size_t at = FirstInvalidUtf8(path); at != std::string_view::npos) {
    return NotUtf8("the path", path, at);
  }
  std::string_view rest = req.query;
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    const size_t eq = pair.find('=');
    const std::string key = http::UrlDecode(pair.substr(0, eq));
    if (size_t at = FirstInvalidUtf8(key); at != std::string_view::npos) {
      return NotUtf8("a query parameter name", key, at);
    }
    if (eq == std::string_view::npos) continue;
    const std::string value = http::UrlDecode(pair.substr(eq + 1));
    if (size_t at = FirstInvalidUtf8(value); at != std::string_view::npos) {
      // The name is valid UTF-8 (checked above); it is cut to a readable length.
      return NotUtf8(fmt::format("query parameter '{}'", key.substr(0, 64)), value, at);
    }
  }
  return Status::Ok();
}

Status CheckTransRequest(const TransRequest& r, std::string_view api,
                         const core::Settings& settings) {
  if (r.has_business_keys && (api == "submit" || api == "prepare") && r.trans_type &&
      *r.trans_type == core::TransType::kWorkflow) {
    return Status::Unimplemented("business_keys on a workflow transaction is not supported");
  }
  if (r.has_retry_limit && r.options.retry_limit > settings.max_retry_limit) {
    return Status::InvalidArgument(
        fmt::format("retry_limit {} is over this server's limit of {} (--max-retry-limit)",
                    r.options.retry_limit, settings.max_retry_limit));
  }
  return Status::Ok();
}

}  // namespace dtx::api
