// Blocking HTTP calls of the SDK (sdk/blocking_http.h).
#include "sdk/blocking_http.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <optional>
#include <utility>

namespace dtx::sdk_internal {
namespace {

namespace asio = boost::asio;

asio::awaitable<void> SendInto(http::ClientRequest request,
                               std::optional<Result<http::ClientResponse>>* out) {
  http::Client client(co_await asio::this_coro::executor);
  out->emplace(co_await client.Send(std::move(request)));
}

}  // namespace

Result<http::ClientResponse> BlockingSend(http::ClientRequest request) {
  asio::io_context ioc{1};
  std::optional<Result<http::ClientResponse>> out;
  std::optional<Status> failure;
  asio::co_spawn(ioc, SendInto(std::move(request), &out), [&failure](const std::exception_ptr& e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      failure.emplace(Status::Internal(std::string("http: ") + ex.what()));
    } catch (...) {
      failure.emplace(Status::Internal("http: unknown exception"));
    }
  });
  ioc.run();
  if (failure) return *failure;
  if (!out) return Status::Internal("http: exchange did not complete");
  return std::move(*out);
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

}  // namespace dtx::sdk_internal
