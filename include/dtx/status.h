/// @file
/// dtx::Status and dtx::Result<T>: expected failures (bad input, a conflict, a coordinator that is
/// down, a participant that timed out) as values instead of exceptions; each code says whether the
/// caller may retry. Thread-safe as values (no shared state). Members: docs/api/status.dox.
/// @code
/// #include <dtx/client.h>
///   dtx::Client client("http://127.0.0.1:36789/api/dtmsvr");
///   dtx::Result<std::string> gid = client.NewGid();
///   if (!gid.ok() && gid.status().retryable()) { /* e.g. "UNAVAILABLE: ...": try again later */ }
///   std::string id = gid.ok() ? *gid : std::string();  // *gid: the value (only when ok)
/// @endcode
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dtx/assert.h"
#include "dtx/export.h"

namespace dtx {

enum class Code : unsigned char {
  kOk = 0,
  kInvalidArgument,  // malformed input; HTTP 400; not retryable
  kNotFound,         // unknown gid or item; HTTP 404; not retryable
  kConflict,         // a transition that is not allowed, a lost compare-and-set; HTTP 409
  kAlreadyExists,    // insert of a key that exists; HTTP 409
  kOngoing,          // the work is still running; HTTP 425; retry later
  kTooLarge,         // body or field over its limit; HTTP 413; not retryable
  kUnavailable,      // a limit was hit or a dependency is down; HTTP 503; retryable
  kTimeout,          // a deadline passed; retryable
  kIoError,          // the store failed to read or write; HTTP 500; retryable after operator action
  kInternal,         // a bug or an unexpected answer; HTTP 500
  kUnimplemented,    // a feature that this build does not have yet; HTTP 501
};

/// The code's name in capitals ("INVALID_ARGUMENT", ...), as Status::ToString prints it.
DTX_EXPORT std::string_view CodeName(Code code);
/// True for kOngoing, kUnavailable, kTimeout and kIoError.
DTX_EXPORT bool IsRetryable(Code code);

/// Machine-readable facts about a failure, for a caller that words it itself (the coordinator's API
/// renders DTM's wire wording from them). `reason` is a stable UPPER_SNAKE_CASE token defined by
/// the module that produces it; `facts` are its named values.
struct DTX_EXPORT ErrorInfo {
  std::string reason;
  std::vector<std::pair<std::string, std::string>> facts;
  /// The value of fact `key`; empty when absent.
  std::string_view Fact(std::string_view key) const;
};

class [[nodiscard]] DTX_EXPORT Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status Conflict(std::string m) { return {Code::kConflict, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status Ongoing(std::string m) { return {Code::kOngoing, std::move(m)}; }
  static Status TooLarge(std::string m) { return {Code::kTooLarge, std::move(m)}; }
  static Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status Timeout(std::string m) { return {Code::kTimeout, std::move(m)}; }
  static Status IoError(std::string m) { return {Code::kIoError, std::move(m)}; }
  static Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }
  static Status Unimplemented(std::string m) { return {Code::kUnimplemented, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  bool retryable() const { return IsRetryable(code_); }
  std::string ToString() const;

  /// The same Status carrying `info` (shared by its copies). Not for an ok Status.
  Status WithInfo(ErrorInfo info) &&;
  /// The attached facts, or null.
  const ErrorInfo* info() const { return info_.get(); }
  /// info()->reason, or empty.
  std::string_view reason() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
  std::shared_ptr<const ErrorInfo> info_;
};

/// Result<T>: a T or a non-ok Status.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    DTX_ASSERT(!status_.ok());
  }

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & {  ///< The value (asserts ok()).
    DTX_ASSERT(ok());
    return *value_;
  }
  const T& value() const& {  ///< The value (asserts ok()).
    DTX_ASSERT(ok());
    return *value_;
  }
  T&& value() && {  ///< The value, moved out (asserts ok()).
    DTX_ASSERT(ok());
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }             ///< value()
  const T& operator*() const& { return value(); }  ///< value()

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace dtx
