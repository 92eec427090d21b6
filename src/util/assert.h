// DTX_ASSERT / DTX_INVARIANT: programmer errors crash loudly (in every build type). Never use them
// for anything a user or a peer can send; validate input and return a Status instead.
#pragma once

namespace dtx::detail {
[[noreturn]] void AssertFail(const char* expr, const char* file, int line, const char* msg);
}  // namespace dtx::detail

#define DTX_ASSERT(expr) \
  ((expr) ? static_cast<void>(0) : ::dtx::detail::AssertFail(#expr, __FILE__, __LINE__, ""))
#define DTX_INVARIANT(expr, msg) \
  ((expr) ? static_cast<void>(0) : ::dtx::detail::AssertFail(#expr, __FILE__, __LINE__, msg))
