/// @file
/// DTX_ASSERT / DTX_INVARIANT: programmer errors crash loudly (in every build type), e.g. reading
/// the value of a Result that holds an error; never for anything a user or a peer can send.
/// @code
///   int index = 0, size = 1;  DTX_ASSERT(index < size);  DTX_INVARIANT(size > 0, "not empty");
/// @endcode
#pragma once

#include "dtx/export.h"

namespace dtx::detail {
/// Prints the failed expression with its place to stderr and aborts.
[[noreturn]] DTX_EXPORT void AssertFail(const char* expr, const char* file, int line,
                                        const char* msg);
}  // namespace dtx::detail

#define DTX_ASSERT(expr) \
  ((expr) ? static_cast<void>(0) : ::dtx::detail::AssertFail(#expr, __FILE__, __LINE__, ""))
#define DTX_INVARIANT(expr, msg) \
  ((expr) ? static_cast<void>(0) : ::dtx::detail::AssertFail(#expr, __FILE__, __LINE__, msg))
