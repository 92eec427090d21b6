// dtx-echo-bench: the HTTP floor. A trivial keep-alive HTTP exchange through dtx::http::Server
// (Boost.Beast) on ONE server thread, driven by keep-alive connections on another thread, so the
// result reads as "requests/s per core" and "CPU µs per request" — the cost a coordinator cannot go
// below for each HTTP exchange it serves (submit) or makes (branch calls, with dtx::http::Client).
//
//   dtx-echo-bench [--mode raw|client] [--connections 32] [--seconds 3] [--json]
//
// raw:    the load is hand-written minimal HTTP/1.1 on raw sockets (cheap), so the server thread is
//         the bottleneck: server µs/request is the cost of serving one request.
// client: the load comes from dtx::http::Client (what the coordinator uses to call participants):
//         client µs/request is the cost of making one call.
// CPU time is per thread (CLOCK_THREAD_CPUTIME_ID read on the server and load threads).
#include <time.h>

#include <CLI/CLI.hpp>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>

#include "http/client.h"
#include "http/server.h"
#include "runtime/io_pool.h"

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
constexpr auto kUse = asio::as_tuple(asio::use_awaitable);

class EchoHandler final : public dtx::http::Handler {
 public:
  asio::awaitable<dtx::http::Response> Handle(dtx::http::Request) override {
    dtx::http::Response r;
    r.body = R"({"dtm_result":"SUCCESS"})";
    co_return r;
  }
};

std::atomic<uint64_t> g_done{0};
std::atomic<bool> g_stop{false};
std::atomic<int> g_live{0};  // load loops still running

struct LiveGuard {
  LiveGuard() { g_live.fetch_add(1); }
  ~LiveGuard() { g_live.fetch_sub(1); }
  LiveGuard(const LiveGuard&) = delete;
  LiveGuard& operator=(const LiveGuard&) = delete;
};

// One keep-alive connection sending requests back to back, parsing just enough of each response.
asio::awaitable<void> RawLoop(uint16_t port) {
  LiveGuard live;
  tcp::socket socket(co_await asio::this_coro::executor);
  auto [cec] = co_await socket.async_connect({asio::ip::make_address("127.0.0.1"), port}, kUse);
  if (cec) co_return;
  socket.set_option(tcp::no_delay(true));
  const std::string request =
      "POST /busi/ok HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      "Content-Length: 13\r\n\r\n{\"amount\":30}";
  std::string buffer;
  std::array<char, 4096> chunk;
  while (!g_stop.load(std::memory_order_relaxed)) {
    auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(request), kUse);
    if (wec) co_return;
    for (;;) {
      const size_t end = buffer.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t cl = buffer.find("Content-Length: ");
        if (cl == std::string::npos || cl > end) cl = buffer.find("content-length: ");
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

asio::awaitable<void> ClientLoop(dtx::http::Client* client, std::string url) {
  LiveGuard live;
  while (!g_stop.load(std::memory_order_relaxed)) {
    dtx::http::ClientRequest request;
    request.method = "POST";
    request.url = url;
    request.body = R"({"amount":30})";
    request.headers.emplace_back("Content-Type", "application/json");
    auto result = co_await client->Send(std::move(request));
    if (!result.ok() || result->status != 200) {
      if (!g_stop.load()) std::fprintf(stderr, "dtx-echo-bench: request failed\n");
      co_return;
    }
    g_done.fetch_add(1, std::memory_order_relaxed);
  }
}

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// The CPU time of the thread running `ctx` (one-thread pool), read on that thread.
double ContextCpuSeconds(asio::io_context& ctx) {
  std::promise<double> p;
  asio::post(ctx, [&p] { p.set_value(ThreadCpuSeconds()); });
  return p.get_future().get();
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = "raw";
  int connections = 32;
  double seconds = 3;
  bool json = false;
  CLI::App app{"dtx-echo-bench: requests/s and CPU/request of a trivial HTTP exchange, 1 core"};
  app.add_option("--mode", mode, "raw | client")->capture_default_str();
  app.add_option("--connections", connections, "keep-alive connections")->capture_default_str();
  app.add_option("--seconds", seconds, "measured duration (after 0.5 s warm-up)")
      ->capture_default_str();
  app.add_flag("--json", json, "one JSON object on stdout");
  CLI11_PARSE(app, argc, argv);
  if ((mode != "raw" && mode != "client") || connections < 1 || seconds <= 0) {
    std::fprintf(stderr, "dtx-echo-bench: bad arguments\n");
    return 2;
  }

  dtx::runtime::IoPool server_pool(1);
  server_pool.Start();
  EchoHandler handler;
  dtx::http::Server server(server_pool, {}, handler);
  if (auto status = server.Start(); !status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    return 1;
  }

  dtx::runtime::IoPool load_pool(1);
  dtx::http::ClientOptions client_options;
  client_options.max_connections_per_host = static_cast<size_t>(connections);
  client_options.max_idle_per_host = static_cast<size_t>(connections);
  dtx::http::Client client(load_pool.Get(0).get_executor(), client_options);
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/busi/ok";
  for (int i = 0; i < connections; ++i) {
    if (mode == "client") {
      asio::co_spawn(load_pool.Get(0), ClientLoop(&client, url), asio::detached);
    } else {
      asio::co_spawn(load_pool.Get(0), RawLoop(server.port()), asio::detached);
    }
  }
  load_pool.Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // connections set up
  const uint64_t count0 = g_done.load();
  const double server0 = ContextCpuSeconds(server_pool.Get(0));
  const double load0 = ContextCpuSeconds(load_pool.Get(0));
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
  const uint64_t count = g_done.load() - count0;
  const double server_cpu = ContextCpuSeconds(server_pool.Get(0)) - server0;
  const double load_cpu = ContextCpuSeconds(load_pool.Get(0)) - load0;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  g_stop.store(true);

  const double rps = static_cast<double>(count) / elapsed;
  const double n = count > 0 ? static_cast<double>(count) : 1;
  const double server_us = server_cpu * 1e6 / n;
  const double load_us = load_cpu * 1e6 / n;
  if (json) {
    std::printf(
        "{\"mode\":\"%s\",\"connections\":%d,\"requests_per_s\":%.0f,\"server_cpu_us\":%.2f,"
        "\"load_cpu_us\":%.2f,\"server_core_busy\":%.2f}\n",
        mode.c_str(), connections, rps, server_us, load_us, server_cpu / elapsed);
  } else {
    std::printf(
        "%s: %d connections, 1 server thread: %.0f requests/s; server %.2f CPU-µs/request (thread "
        "%.0f%% busy), load side %.2f CPU-µs/request\n",
        mode.c_str(), connections, rps, server_us, 100 * server_cpu / elapsed, load_us);
  }
  server.Stop();  // closes the connections: every load loop ends
  for (int i = 0; i < 500 && g_live.load() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  load_pool.Stop();
  load_pool.Join();
  server_pool.Stop();
  server_pool.Join();
  return count > 0 ? 0 : 1;
}
