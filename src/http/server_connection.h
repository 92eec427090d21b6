// One accepted connection of the HTTP server and its deadline watchdog (server.cc); not part of
// the API.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

namespace dtx::http::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using ErrorCode = boost::system::error_code;

using Executor = asio::io_context::executor_type;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;
using Timer = asio::basic_waitable_timer<SteadyClock, asio::wait_traits<SteadyClock>, Executor>;
using TlsStream = asio::ssl::stream<Socket&>;

constexpr auto kUse = asio::as_tuple(asio::use_awaitable);

// After an error answer (413, 408, 503, ...) the server stops sending, then reads and discards what
// the client still sends for a short while before closing. Closing with unread data makes the
// kernel send a RST, which can destroy the answer before the client reads it.
constexpr std::chrono::milliseconds kLingerTimeout{1000};
constexpr size_t kLingerMaxBytes = 16 * 1024 * 1024;
// Stop() waits this long for connection coroutines (and handlers, which are cancelled) to finish.
constexpr std::chrono::milliseconds kStopWait{5000};
// Reads grow from kReadChunkMin to kReadChunkMax while they fill the buffer (large bodies).
constexpr size_t kReadChunkMin = 4096;
constexpr size_t kReadChunkMax = 64 * 1024;
// Timeouts are clamped so that now + timeout cannot overflow the clock.
constexpr std::chrono::milliseconds kMaxTimeout = std::chrono::hours(24 * 365);

constexpr std::string_view k100Continue = "HTTP/1.1 100 Continue\r\n\r\n";

// What a connection is doing; decides what a passed deadline means.
enum class Phase : unsigned char {
  kIdle,      // waiting for the first byte of a request: a timeout closes silently
  kReading,   // inside a request: a timeout is answered with 408
  kHandling,  // the handler runs: no deadline
  kWriting,   // sending a response: a timeout closes
  kLinger,    // draining before close
  kDone,      // the coroutine has finished
};

// One accepted connection. Owned (shared) by its coroutine, its completion handler, the watchdog
// wait and, until Stop, the server's registry. Touched only on its own context, except
// construction.
//
// Timeouts use one lazily re-armed timer per connection (a watchdog) instead of arming and
// cancelling a timer around every read and write: a request only stores a new deadline, and the
// timer is re-armed when it fires early or when a deadline moves earlier. This keeps timer
// operations off the per-request path. (beast::tcp_stream's expiry would close the socket on
// timeout, which makes a 408 impossible.)
struct Connection {
  explicit Connection(Socket s) : socket(std::move(s)), timer(socket.get_executor()) {}

  Socket socket;
  std::unique_ptr<TlsStream> tls;  // over `socket` when the server has a TLS context
  Timer timer;
  asio::cancellation_signal cancel;
  beast::flat_buffer buffer;  // reused for every request of the connection
  std::string head;           // the response status line and headers, reused
  size_t read_chunk = kReadChunkMin;
  SteadyClock::time_point deadline;
  Phase phase = Phase::kIdle;
  bool armed = false;      // a watchdog wait is pending
  bool timed_out = false;  // the watchdog cancelled the socket for the current phase
  bool counted = false;    // counts towards max_connections (false for a 503 rejection)
  uint64_t id = 0;
};

struct Watchdog {
  std::shared_ptr<Connection> conn;

  void operator()(const ErrorCode& ec) const {
    if (ec) return;  // re-armed (a newer wait exists) or the connection is done
    Connection& c = *conn;
    if (c.phase == Phase::kHandling || c.phase == Phase::kDone) {
      c.armed = false;  // the next SetDeadline re-arms
      return;
    }
    if (SteadyClock::now() < c.deadline) {
      c.timer.expires_at(c.deadline);
      c.timer.async_wait(Watchdog{conn});
      return;
    }
    c.armed = false;
    c.timed_out = true;
    ErrorCode ignored;
    c.socket.cancel(ignored);
  }
};

inline void SetDeadline(const std::shared_ptr<Connection>& conn, Phase phase,
                        std::chrono::milliseconds timeout) {
  Connection& c = *conn;
  c.phase = phase;
  c.timed_out = false;
  c.deadline = SteadyClock::now() + std::min(timeout, kMaxTimeout);
  if (!c.armed || c.deadline < c.timer.expiry()) {
    c.armed = true;
    c.timer.expires_at(c.deadline);  // cancels an earlier wait, whose handler then does nothing
    c.timer.async_wait(Watchdog{conn});
  }
}

}  // namespace dtx::http::detail
