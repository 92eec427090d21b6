// The internal name of DTX_ASSERT / DTX_INVARIANT, defined in the public include/dtx/assert.h (the
// public Result<T> uses them; this header only forwards to it).
#pragma once

#include "dtx/assert.h"
