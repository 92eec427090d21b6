// A throughput benchmark of the HTTP server and client: tiny keep-alive requests against a handler
// that answers at once. Not built by default: `ninja http_benchmark`, then
//   http_benchmark [raw|client] [connections=32] [seconds=5] [server_threads=1]
// raw:    the load comes from minimal hand-written keep-alive connections (measures the server)
// client: the load comes from dtx::http::Client (measures server + client)
// The load generator runs on its own thread, so with server_threads=1 the server gets one core.
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>

#include "http/client.h"
#include "http/server.h"
#include "runtime/io_pool.h"

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using dtx::http::Client;
using dtx::http::ClientRequest;
using dtx::http::Handler;
using dtx::http::Request;
using dtx::http::Response;

constexpr auto kUse = asio::as_tuple(asio::use_awaitable);

class OkHandler : public Handler {
 public:
  asio::awaitable<Response> Handle(Request) override {
    Response r;
    r.body = R"({"dtm_result":"SUCCESS"})";
    co_return r;
  }
};

std::atomic<uint64_t> g_done{0};
std::atomic<bool> g_stop{false};

// One keep-alive connection sending requests back to back, parsing just enough of each response.
asio::awaitable<void> RawLoop(uint16_t port) {
  tcp::socket socket(co_await asio::this_coro::executor);
  auto [cec] = co_await socket.async_connect({asio::ip::make_address("127.0.0.1"), port}, kUse);
  if (cec) co_return;
  socket.set_option(tcp::no_delay(true));
  const std::string request =
      "POST /api/busi/TransIn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      "Content-Length: 16\r\n\r\n{\"amount\":30.00}";
  std::string buffer;
  std::array<char, 4096> chunk;
  while (!g_stop.load(std::memory_order_relaxed)) {
    auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(request), kUse);
    if (wec) co_return;
    for (;;) {
      const size_t end = buffer.find("\r\n\r\n");
      if (end != std::string::npos) {
        const size_t cl = buffer.find("Content-Length: ");
        const size_t length = cl < end ? std::strtoul(buffer.c_str() + cl + 16, nullptr, 10) : 0;
        if (buffer.size() >= end + 4 + length) {
          buffer.erase(0, end + 4 + length);
          break;
        }
      }
      auto [rec, rn] = co_await socket.async_read_some(asio::buffer(chunk), kUse);
      if (rec) co_return;
      buffer.append(chunk.data(), rn);
    }
    g_done.fetch_add(1, std::memory_order_relaxed);
  }
}

asio::awaitable<void> ClientLoop(Client* client, std::string url) {
  while (!g_stop.load(std::memory_order_relaxed)) {
    ClientRequest request;
    request.method = "POST";
    request.url = url;
    request.body = R"({"amount":30.00})";
    auto result = co_await client->Send(std::move(request));
    if (!result.ok()) {
      if (g_stop.load()) co_return;  // the server stopped first
      std::fprintf(stderr, "request failed: %s\n", result.status().ToString().c_str());
      co_return;
    }
    g_done.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view mode = argc > 1 ? argv[1] : "raw";
  const int connections = argc > 2 ? std::atoi(argv[2]) : 32;
  const int seconds = argc > 3 ? std::atoi(argv[3]) : 5;
  const size_t server_threads = argc > 4 ? std::strtoul(argv[4], nullptr, 10) : 1;

  dtx::runtime::IoPool server_pool(server_threads);
  server_pool.Start();
  OkHandler handler;
  dtx::http::Server server(server_pool, {}, handler);
  if (auto status = server.Start(); !status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    return 1;
  }

  dtx::runtime::IoPool load_pool(1);
  dtx::http::ClientOptions client_options;
  client_options.max_connections_per_host = static_cast<size_t>(connections);
  Client client(load_pool.Get(0).get_executor(), client_options);
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/api/busi/TransIn";
  for (int i = 0; i < connections; ++i) {
    if (mode == "client") {
      asio::co_spawn(load_pool.Get(0), ClientLoop(&client, url), asio::detached);
    } else {
      asio::co_spawn(load_pool.Get(0), RawLoop(server.port()), asio::detached);
    }
  }
  load_pool.Start();
  std::this_thread::sleep_for(std::chrono::seconds(1));  // warm up
  const uint64_t start_count = g_done.load();
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  const uint64_t count = g_done.load() - start_count;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  g_stop.store(true);
  std::printf("%s: %d connections, %zu server thread(s): %.0f requests/s\n",
              std::string(mode).c_str(), connections, server_threads,
              static_cast<double>(count) / elapsed);

  server.Stop();
  load_pool.Stop();
  load_pool.Join();
  return 0;
}
