// DTM's wire wording (PROTOCOL.md §1.12, §2.3). The engine refuses with a Status code and
// machine-readable facts (engine/refusal.h); the API answers with the exact messages DTM's clients
// and tests match on — typos included ("cannot sumbmit").
#pragma once

#include <string>

#include "util/status.h"

namespace dtx::api {

// The message of a non-ok Status as it goes on the wire: DTM's wording for an engine refusal, the
// Status's own message otherwise.
std::string WireMessage(const Status& status);

}  // namespace dtx::api
