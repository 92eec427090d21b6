// BranchCaller: the network seam of the engine. It makes one call to a participant (PROTOCOL.md
// §3.2) and reports the raw answer; the core classifies it. One caller per IoPool context (shard);
// used only from that context.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "core/model.h"
#include "http/client.h"

namespace dtx::engine {

struct BranchCallSpec {
  std::string method;  // GET or POST
  std::string url;     // with gid, trans_type, branch_id, op merged into the query
  core::Headers headers;
  std::string body;
  int64_t timeout_ms = 3000;
};

struct BranchAnswer {
  int http_status = 0;  // 0 = no answer (connection error, timeout)
  std::string body;     // the answer body, or the transport error text
};

class BranchCaller {
 public:
  virtual ~BranchCaller() = default;
  virtual boost::asio::awaitable<BranchAnswer> Call(BranchCallSpec spec) = 0;
};

// An HTTP caller on top of http::Client, bound to `executor`.
std::unique_ptr<BranchCaller> NewHttpBranchCaller(boost::asio::any_io_executor executor);
// The same with client options: the TLS context of --ca-file, the URL policy of
// --branch-url-allow (dtx server's caller factory).
std::unique_ptr<BranchCaller> NewHttpBranchCallerWith(boost::asio::any_io_executor executor,
                                                      http::ClientOptions options);

// Builds the request of §3.2 for branch row `row` of `global`: POST with bin_data when it is
// non-empty, else GET; query gid, trans_type, branch_id, op merged into the URL's own query;
// Content-type: application/json plus branch_headers.
BranchCallSpec BuildBranchCall(const core::GlobalTrans& global, const core::BranchRow& row,
                               int64_t timeout_ms);

// The msg check-back (§1.9): GET query_prepared?gid&trans_type=msg&branch_id=00&op=msg, no body.
BranchCallSpec BuildCheckBackCall(const core::GlobalTrans& global, int64_t timeout_ms);

}  // namespace dtx::engine
