// From a decoded DTM request to what the engine takes: a saga's or msg's transaction (with topic
// expansion), the rows of registerBranch, the options patch of submit/abort; and new gids.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/codec.h"
#include "core/model.h"
#include "dtx/status.h"
#include "engine/engine.h"

namespace dtx::api {

// A new unique gid: [A-Za-z0-9], 22 characters.
std::string NewGid();

// kUnimplemented for a protocol other than http (empty means http), naming it.
Status CheckProtocol(const std::string& protocol);

// Builds the branch rows and global of a saga from a decoded submit request; validates payload
// count, URLs and custom_data. kInvalidArgument on bad input.
Result<core::TransSnapshot> BuildSaga(const TransRequest& request);

// The options a submit or abort request sets (only those it names).
core::OptionsPatch PatchFrom(const TransRequest& req);

// The subscribers of every topic named by a topic:// action of a request, read from the store.
using TopicMap = std::map<std::string, std::vector<engine::Engine::Subscriber>>;

inline constexpr std::string_view kTopicScheme = "topic://";

// A msg's transaction; topic:// actions expand into one branch per subscriber of `topics`.
Result<core::TransSnapshot> BuildMsg(const TransRequest& req, const TopicMap& topics);

// The rows of a registerBranch request (its form fields); sets `gid` and `type` from them.
Result<std::vector<core::BranchRow>> BuildRegisteredRows(
    const std::vector<std::pair<std::string, std::string>>& kv, std::string& gid,
    core::TransType& type);

}  // namespace dtx::api
