#include "dtx/status.h"

namespace dtx {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "OK";
    case Code::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case Code::kNotFound:
      return "NOT_FOUND";
    case Code::kConflict:
      return "CONFLICT";
    case Code::kAlreadyExists:
      return "ALREADY_EXISTS";
    case Code::kOngoing:
      return "ONGOING";
    case Code::kTooLarge:
      return "TOO_LARGE";
    case Code::kUnavailable:
      return "UNAVAILABLE";
    case Code::kTimeout:
      return "TIMEOUT";
    case Code::kIoError:
      return "IO_ERROR";
    case Code::kInternal:
      return "INTERNAL";
    case Code::kUnimplemented:
      return "UNIMPLEMENTED";
  }
  return "UNKNOWN";
}

bool IsRetryable(Code code) {
  switch (code) {
    case Code::kOngoing:
    case Code::kUnavailable:
    case Code::kTimeout:
    case Code::kIoError:
      return true;
    default:
      return false;
  }
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s(CodeName(code_));
  s += ": ";
  s += message_;
  return s;
}

std::string_view ErrorInfo::Fact(std::string_view key) const {
  for (const auto& [k, v] : facts) {
    if (k == key) return v;
  }
  return {};
}

Status Status::WithInfo(ErrorInfo info) && {
  DTX_ASSERT(!ok());
  info_ = std::make_shared<const ErrorInfo>(std::move(info));
  return std::move(*this);
}

std::string_view Status::reason() const {
  return info_ ? std::string_view(info_->reason) : std::string_view();
}

}  // namespace dtx
