// The internal name of dtx::Status / dtx::Result<T>: they are part of the public API, defined in
// include/dtx/status.h (one definition; this header only forwards to it).
#pragma once

#include "dtx/status.h"
