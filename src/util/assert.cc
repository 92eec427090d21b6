#include "dtx/assert.h"

#include <cstdio>
#include <cstdlib>

namespace dtx::detail {

void AssertFail(const char* expr, const char* file, int line, const char* msg) {
  std::fprintf(stderr, "dtx: assertion failed: %s at %s:%d %s\n", expr, file, line, msg);
  std::fflush(stderr);
  std::abort();
}

}  // namespace dtx::detail
