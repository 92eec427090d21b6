#include "engine/branch_caller.h"

#include <boost/asio/use_awaitable.hpp>

#include "http/client.h"

namespace dtx::engine {
namespace {

class HttpBranchCaller final : public BranchCaller {
 public:
  HttpBranchCaller(boost::asio::any_io_executor executor, http::ClientOptions options)
      : client_(executor, std::move(options)) {}

  boost::asio::awaitable<BranchAnswer> Call(BranchCallSpec spec) override {
    http::ClientRequest req;
    req.method = std::move(spec.method);
    req.url = std::move(spec.url);
    req.headers = std::move(spec.headers);
    req.body = std::move(spec.body);
    req.timeout = std::chrono::milliseconds(spec.timeout_ms);
    Result<http::ClientResponse> r = co_await client_.Send(std::move(req));
    BranchAnswer answer;
    if (!r.ok()) {
      answer.http_status = 0;
      answer.body = r.status().ToString();
    } else {
      answer.http_status = r->status;
      answer.body = std::move(r->body);
    }
    co_return answer;
  }

 private:
  http::Client client_;
};

}  // namespace

std::unique_ptr<BranchCaller> NewHttpBranchCaller(boost::asio::any_io_executor executor) {
  return std::make_unique<HttpBranchCaller>(std::move(executor), http::ClientOptions{});
}

std::unique_ptr<BranchCaller> NewHttpBranchCallerWith(boost::asio::any_io_executor executor,
                                                      http::ClientOptions options) {
  return std::make_unique<HttpBranchCaller>(std::move(executor), std::move(options));
}

namespace {

std::string WithIdentity(std::string url, std::string_view gid, std::string_view trans_type,
                         std::string_view branch_id, std::string_view op) {
  if (auto hash = url.find('#'); hash != std::string::npos) url.resize(hash);
  url += url.find('?') == std::string::npos ? '?' : '&';
  url += "branch_id=" + http::UrlEncode(branch_id);
  url += "&gid=" + http::UrlEncode(gid);
  url += "&op=" + http::UrlEncode(op);
  url += "&trans_type=" + http::UrlEncode(trans_type);
  return url;
}

BranchCallSpec BaseSpec(const core::GlobalTrans& global, int64_t timeout_ms) {
  BranchCallSpec spec;
  spec.headers.emplace_back("Content-type", "application/json");
  for (const auto& h : global.options.branch_headers) spec.headers.push_back(h);
  spec.timeout_ms = timeout_ms;
  return spec;
}

}  // namespace

BranchCallSpec BuildBranchCall(const core::GlobalTrans& global, const core::BranchRow& row,
                               int64_t timeout_ms) {
  BranchCallSpec spec = BaseSpec(global, timeout_ms);
  const bool post = !row.bin_data.empty() || global.trans_type == core::TransType::kXa;
  spec.method = post ? "POST" : "GET";
  spec.url =
      WithIdentity(row.url, global.gid, core::ToString(global.trans_type), row.branch_id, row.op);
  spec.body = row.bin_data;
  return spec;
}

BranchCallSpec BuildCheckBackCall(const core::GlobalTrans& global, int64_t timeout_ms) {
  BranchCallSpec spec = BaseSpec(global, timeout_ms);
  spec.method = "GET";
  // msg, or notify (a two-phase notification is checked back the same way).
  spec.url = WithIdentity(global.query_prepared, global.gid, core::ToString(global.trans_type),
                          "00", "msg");
  return spec;
}

}  // namespace dtx::engine
