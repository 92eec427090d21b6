#include "util/mutation.h"

namespace dtx::mutation {
namespace {
Kind g_kind = Kind::kNone;  // set only by the single-threaded simulator
}  // namespace

void Set(Kind kind) { g_kind = kind; }
Kind Get() { return g_kind; }

}  // namespace dtx::mutation
