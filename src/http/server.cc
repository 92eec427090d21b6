// The HTTP server: the listener (accept loop, connection limit, Stop) and the connections (one
// coroutine each, plain or TLS). The message helpers are in message.cc, TLS contexts in tls.cc.
#include "http/server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <condition_variable>
#include <exception>
#include <limits>
#include <mutex>
#include <unordered_map>

#include "http/server_connection.h"
#include "http/server_internal.h"
#include "http/tls.h"

// GCC 12 reports a false -Wmismatched-new-delete for Asio's awaitable frames (GCC bug 109224).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dtx::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using ErrorCode = boost::system::error_code;
using detail::ErrorJson;
using detail::InternalError;
using detail::SerializeHead;
using detail::StatusHasNoBody;
using detail::ValidStatus;

// Connection, Phase, SetDeadline and the limits of a connection: server_connection.h.
using namespace detail;

// ---------------------------------------------------------------------------------------------------
// Server::Impl

struct Server::Impl : std::enable_shared_from_this<Impl> {
  Impl(runtime::IoPool& pool, ServerOptions options, Handler& handler)
      : pool_(pool), options_(std::move(options)), handler_(handler) {}

  Status Start();
  void Stop();

  // Completion handler of every coroutine the server spawns: logs an escaped exception,
  // unregisters.
  struct CoroutineDone {
    std::shared_ptr<Impl> self;
    std::shared_ptr<Connection> conn;  // null for the accept loop

    void operator()(const std::exception_ptr& e) const {
      if (e) LogException(e, conn ? "connection" : "accept loop");
      self->OnCoroutineDone(conn);
    }
  };

  static void LogException(const std::exception_ptr& e, const char* what) {
    try {
      std::rethrow_exception(e);
    } catch (const boost::system::system_error& se) {
      if (se.code() == asio::error::operation_aborted) {
        spdlog::debug("http server: {} cancelled", what);
      } else {
        spdlog::error("http server: {} failed: {}", what, se.what());
      }
    } catch (const std::exception& ex) {
      spdlog::error("http server: {} failed: {}", what, ex.what());
    } catch (...) {
      spdlog::error("http server: {} failed with an unknown exception", what);
    }
  }

  void OnCoroutineDone(const std::shared_ptr<Connection>& conn) {
    if (conn) {
      conn->phase = Phase::kDone;
      ErrorCode ignored;
      conn->timer.cancel();
      conn->socket.close(ignored);
    }
    std::lock_guard lock(mu_);
    if (conn) {
      conns_.erase(conn->id);
      if (conn->counted) open_.fetch_sub(1, std::memory_order_relaxed);
    }
    if (--live_ == 0) cv_.notify_all();
  }

  static asio::awaitable<void> AcceptLoop(std::shared_ptr<Impl> self);
  static void OnAccepted(const std::shared_ptr<Impl>& self, Socket socket);
  static asio::awaitable<void> Serve(std::shared_ptr<Impl> self, std::shared_ptr<Connection> conn);
  static asio::awaitable<void> Reject(std::shared_ptr<Impl> self, std::shared_ptr<Connection> conn);
  static asio::awaitable<void> FailAndClose(std::shared_ptr<Impl> self,
                                            std::shared_ptr<Connection> conn, int status,
                                            std::string body, bool linger);
  static asio::awaitable<void> CloseGracefully(std::shared_ptr<Connection> conn);
  // The TLS handshake of a new connection within read_timeout; true when done or not TLS.
  static asio::awaitable<bool> Handshake(std::shared_ptr<Impl> self,
                                         std::shared_ptr<Connection> conn);
  // Answers what ended the reading of a request (408, 413, 431, 400) or closes silently.
  static asio::awaitable<void> AnswerReadError(std::shared_ptr<Impl> self,
                                               std::shared_ptr<Connection> conn, ErrorCode ec,
                                               bool inside_request);

  runtime::IoPool& pool_;
  const ServerOptions options_;
  Handler& handler_;

  std::optional<Acceptor> acceptor_;  // on pool_.Get(0); reset there by Stop
  std::atomic<uint16_t> port_{0};
  std::atomic<size_t> open_{0};  // connections being served (not 503 rejections)
  std::atomic<uint64_t> accepted_{0};
  std::atomic<bool> stopping_{false};

  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;  // guarded by mu_
  bool stopped_ = false;  // guarded by mu_
  uint64_t next_id_ = 0;  // guarded by mu_
  size_t live_ = 0;       // spawned coroutines not yet finished; guarded by mu_
  std::unordered_map<uint64_t, std::shared_ptr<Connection>> conns_;  // guarded by mu_
};

Status Server::Impl::Start() {
  {
    std::lock_guard lock(mu_);
    if (started_ || stopped_) return Status::Conflict("http server: Start called twice");
    started_ = true;
  }
  // Names are not resolved (a listen address must not depend on DNS), except "localhost".
  ErrorCode ec;
  const std::string host = options_.host == "localhost" ? "127.0.0.1"
                           : options_.host.empty()      ? "0.0.0.0"
                                                        : options_.host;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) {
    return Status::InvalidArgument(fmt::format(
        "http server: invalid listen address '{}': an IP address or localhost is expected",
        options_.host));
  }
  const tcp::endpoint endpoint(address, options_.port);
  const std::string where = fmt::format("{}:{}", options_.host, options_.port);
  acceptor_.emplace(pool_.Get(0).get_executor());
  if (acceptor_->open(endpoint.protocol(), ec); ec) {
    acceptor_.reset();
    return Status::Unavailable(
        fmt::format("http server: cannot open a socket for {}: {}", where, ec.message()));
  }
  acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (acceptor_->bind(endpoint, ec); ec) {
    acceptor_.reset();
    return Status::Unavailable(
        fmt::format("http server: cannot listen on {}: {}", where, ec.message()));
  }
  if (acceptor_->listen(asio::socket_base::max_listen_connections, ec); ec) {
    acceptor_.reset();
    return Status::Unavailable(
        fmt::format("http server: cannot listen on {}: {}", where, ec.message()));
  }
  port_.store(acceptor_->local_endpoint(ec).port());
  {
    std::lock_guard lock(mu_);
    ++live_;
  }
  auto self = shared_from_this();
  asio::co_spawn(pool_.Get(0), AcceptLoop(self), CoroutineDone{self, nullptr});
  return Status::Ok();
}

asio::awaitable<void> Server::Impl::AcceptLoop(std::shared_ptr<Impl> self) {
  for (;;) {
    if (self->stopping_.load() || !self->acceptor_ || !self->acceptor_->is_open()) co_return;
    auto [ec, socket] = co_await self->acceptor_->async_accept(self->pool_.Next(), kUse);
    if (ec) {
      if (ec == asio::error::operation_aborted || self->stopping_.load()) co_return;
      // Out of file descriptors and the like: back off instead of spinning.
      spdlog::warn("http server: accept failed: {}", ec.message());
      Timer backoff(self->acceptor_->get_executor());
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(kUse);
      continue;
    }
    OnAccepted(self, std::move(socket));
  }
}

void Server::Impl::OnAccepted(const std::shared_ptr<Impl>& self, Socket socket) {
  ErrorCode ec;
  socket.set_option(tcp::no_delay(true), ec);
  self->accepted_.fetch_add(1, std::memory_order_relaxed);
  auto conn = std::make_shared<Connection>(std::move(socket));
  if (self->options_.tls)
    conn->tls = std::make_unique<TlsStream>(conn->socket, *self->options_.tls);
  {
    std::lock_guard lock(self->mu_);
    if (self->stopped_) return;  // the socket closes with conn
    conn->id = self->next_id_++;
    conn->counted = self->open_.load(std::memory_order_relaxed) < self->options_.max_connections;
    if (conn->counted) self->open_.fetch_add(1, std::memory_order_relaxed);
    self->conns_.emplace(conn->id, conn);
    ++self->live_;
  }
  const auto executor = conn->socket.get_executor();
  auto done = asio::bind_cancellation_slot(conn->cancel.slot(), CoroutineDone{self, conn});
  if (conn->counted) {
    asio::co_spawn(executor, Serve(self, conn), std::move(done));
  } else {
    asio::co_spawn(executor, Reject(self, conn), std::move(done));
  }
}

asio::awaitable<void> Server::Impl::Reject(std::shared_ptr<Impl> self,
                                           std::shared_ptr<Connection> conn) {
  const size_t limit = self->options_.max_connections;
  if (!co_await Handshake(self, conn)) co_return;
  co_await FailAndClose(
      self, conn, 503,
      ErrorJson(fmt::format("too many open connections (limit {})", limit), "UNAVAILABLE"), true);
}

asio::awaitable<bool> Server::Impl::Handshake(std::shared_ptr<Impl> self,
                                              std::shared_ptr<Connection> conn) {
  Connection& c = *conn;
  if (!c.tls) co_return true;
  SetDeadline(conn, Phase::kReading, self->options_.read_timeout);
  auto [ec] = co_await c.tls->async_handshake(asio::ssl::stream_base::server, kUse);
  if (ec) {
    spdlog::debug("http server: TLS handshake failed: {}", ec.message());
    ErrorCode ignored;
    c.socket.close(ignored);
    co_return false;
  }
  co_return true;
}

asio::awaitable<void> Server::Impl::CloseGracefully(std::shared_ptr<Connection> conn) {
  Connection& c = *conn;
  ErrorCode ec;
  if (c.tls) {
    // close_notify, then wait (briefly) for the client's; what it still sends is discarded.
    SetDeadline(conn, Phase::kLinger, kLingerTimeout);
    std::tie(ec) = co_await c.tls->async_shutdown(kUse);
    c.socket.close(ec);
    co_return;
  }
  c.socket.shutdown(tcp::socket::shutdown_send, ec);
  if (!ec) {
    SetDeadline(conn, Phase::kLinger, kLingerTimeout);
    size_t drained = 0;
    while (drained < kLingerMaxBytes && !c.timed_out) {
      c.buffer.clear();
      auto [rec, n] = co_await c.socket.async_read_some(c.buffer.prepare(kReadChunkMin), kUse);
      if (rec) break;
      drained += n;
    }
  }
  c.socket.close(ec);
}

asio::awaitable<void> Server::Impl::FailAndClose(std::shared_ptr<Impl> self,
                                                 std::shared_ptr<Connection> conn, int status,
                                                 std::string body, bool linger) {
  Connection& c = *conn;
  Response response;
  response.status = status;
  response.body = std::move(body);
  SerializeHead(c.head, response, /*keep_alive=*/false, /*http10=*/false);
  SetDeadline(conn, Phase::kWriting, self->options_.write_timeout);
  const std::array<asio::const_buffer, 2> buffers{asio::buffer(c.head),
                                                  asio::buffer(response.body)};
  ErrorCode ec;
  if (c.tls) {
    std::tie(ec, std::ignore) = co_await asio::async_write(*c.tls, buffers, kUse);
  } else {
    std::tie(ec, std::ignore) = co_await asio::async_write(c.socket, buffers, kUse);
  }
  if (!ec && !c.timed_out && linger) {
    co_await CloseGracefully(conn);
  } else {
    ErrorCode ignored;
    c.socket.close(ignored);
  }
}

asio::awaitable<void> Server::Impl::AnswerReadError(std::shared_ptr<Impl> self,
                                                    std::shared_ptr<Connection> conn, ErrorCode ec,
                                                    bool inside_request) {
  Connection& c = *conn;
  if (self->stopping_.load()) co_return;
  if (ec == asio::error::operation_aborted && c.timed_out) {
    if (c.phase == Phase::kReading) {
      co_await FailAndClose(self, conn, 408,
                            ErrorJson(fmt::format("request not received within {} ms",
                                                  self->options_.read_timeout.count()),
                                      "TIMEOUT"),
                            true);
    }
    co_return;  // an idle connection timed out: close silently
  }
  if (ec == bhttp::error::body_limit) {
    co_await FailAndClose(self, conn, 413,
                          ErrorJson(fmt::format("request body too large (limit {} bytes)",
                                                self->options_.max_body_bytes),
                                    "TOO_LARGE"),
                          true);
    co_return;
  }
  if (ec == bhttp::error::header_limit) {
    co_await FailAndClose(self, conn, 431,
                          ErrorJson(fmt::format("request header too large (limit {} bytes)",
                                                self->options_.max_header_bytes),
                                    "TOO_LARGE"),
                          true);
    co_return;
  }
  if (detail::IsBeastHttpError(ec)) {
    co_await FailAndClose(
        self, conn, 400, ErrorJson("malformed request: " + ec.message(), "INVALID_ARGUMENT"), true);
    co_return;
  }
  if ((ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) && inside_request) {
    // The client closed (or half-closed) in the middle of a request. If it still listens it
    // learns why; if it is gone the write fails quietly.
    co_await FailAndClose(self, conn, 400,
                          ErrorJson("truncated request: the connection was closed before the "
                                    "request was complete",
                                    "INVALID_ARGUMENT"),
                          false);
    co_return;
  }
  co_return;  // EOF between requests, reset, or closed by Stop
}

asio::awaitable<void> Server::Impl::Serve(std::shared_ptr<Impl> self,
                                          std::shared_ptr<Connection> conn) {
  const ServerOptions& options = self->options_;
  Connection& c = *conn;
  if (!co_await Handshake(self, conn)) co_return;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser;
  bool first = true;
  for (;;) {
    // --- Read one request. The parser is fed by hand so that the wait for the first byte (idle)
    // and the request itself (read_timeout, answered with 408) get different deadlines, and so that
    // a "100 Continue" can be sent after the header.
    parser.emplace();
    parser->eager(true);
    parser->header_limit(static_cast<std::uint32_t>(
        std::min<size_t>(options.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    parser->body_limit(options.max_body_bytes);
    // A new connection must send its first request within read_timeout; a kept-alive one may stay
    // silent for idle_timeout.
    SetDeadline(conn, Phase::kIdle, first ? options.read_timeout : options.idle_timeout);
    bool continue_sent = false;
    ErrorCode ec;
    for (;;) {
      if (c.buffer.size() != 0) {
        if (c.phase == Phase::kIdle) SetDeadline(conn, Phase::kReading, options.read_timeout);
        const size_t used = parser->put(c.buffer.data(), ec);
        c.buffer.consume(used);
        if (ec == bhttp::error::need_more) ec = {};
        if (ec || parser->is_done()) break;
        if (!continue_sent && parser->is_header_done() && detail::ExpectsContinue(parser->get())) {
          continue_sent = true;
          ErrorCode wec;
          if (c.tls) {
            std::tie(wec, std::ignore) =
                co_await asio::async_write(*c.tls, asio::buffer(k100Continue), kUse);
          } else {
            std::tie(wec, std::ignore) =
                co_await asio::async_write(c.socket, asio::buffer(k100Continue), kUse);
          }
          if (wec) co_return;
        }
      }
      if (c.timed_out) {  // the watchdog fired while no read was pending
        ec = asio::error::operation_aborted;
        break;
      }
      ErrorCode rec;
      size_t n = 0;
      if (c.tls) {
        std::tie(rec, n) = co_await c.tls->async_read_some(c.buffer.prepare(c.read_chunk), kUse);
      } else {
        std::tie(rec, n) = co_await c.socket.async_read_some(c.buffer.prepare(c.read_chunk), kUse);
      }
      if (rec) {
        ec = rec;
        break;
      }
      c.buffer.commit(n);
      if (n == c.read_chunk && c.read_chunk < kReadChunkMax) c.read_chunk *= 2;
    }

    if (ec) {
      const bool inside_request = parser->got_some() || c.buffer.size() != 0;
      co_await AnswerReadError(self, conn, ec, inside_request);
      co_return;
    }

    // --- Handle it.
    auto msg = parser->release();
    const bool http10 = msg.version() == 10;
    const bool head_only = msg.method() == bhttp::verb::head;
    bool keep_alive = msg.keep_alive();
    c.phase = Phase::kHandling;
    Response response;
    try {
      response = co_await self->handler_.Handle(detail::MakeRequest(std::move(msg)));
    } catch (const boost::system::system_error& e) {
      if (e.code() == asio::error::operation_aborted && self->stopping_.load()) co_return;
      spdlog::error("http server: handler threw: {}", e.what());
      response = InternalError(e.what());
    } catch (const std::exception& e) {
      spdlog::error("http server: handler threw: {}", e.what());
      response = InternalError(e.what());
    } catch (...) {
      spdlog::error("http server: handler threw an unknown exception");
      response = InternalError("unknown exception");
    }
    if (self->stopping_.load()) keep_alive = false;
    if (!ValidStatus(response.status)) {
      spdlog::error("http server: handler answered the invalid status {}", response.status);
      response = InternalError(fmt::format("invalid status {}", response.status));
    }

    // --- Answer.
    keep_alive = SerializeHead(c.head, response, keep_alive, http10);
    const bool send_body = !head_only && !StatusHasNoBody(response.status);
    SetDeadline(conn, Phase::kWriting, options.write_timeout);
    const std::array<asio::const_buffer, 2> buffers{
        asio::buffer(c.head), send_body ? asio::buffer(response.body) : asio::const_buffer()};
    ErrorCode wec;
    if (c.tls) {
      std::tie(wec, std::ignore) = co_await asio::async_write(*c.tls, buffers, kUse);
    } else {
      std::tie(wec, std::ignore) = co_await asio::async_write(c.socket, buffers, kUse);
    }
    if (wec || c.timed_out) co_return;
    if (!keep_alive) {
      co_await CloseGracefully(conn);
      co_return;
    }
    first = false;
  }
}

void Server::Impl::Stop() {
  std::vector<std::shared_ptr<Connection>> conns;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_.store(true);
    conns.reserve(conns_.size());
    for (auto& [id, conn] : conns_) conns.push_back(conn);
    conns_.clear();
  }

  // Each object is closed on its own context. When the pool does not run, nothing else touches them
  // and they are closed right here.
  const bool running = pool_.running();
  const bool wait = running && !pool_.InPoolThread();
  struct Countdown {
    std::mutex mu;
    std::condition_variable cv;
    size_t pending;
    void Done() {
      std::lock_guard lock(mu);
      if (--pending == 0) cv.notify_all();
    }
  };
  auto countdown = std::make_shared<Countdown>();
  countdown->pending = 1 + conns.size();

  auto self = shared_from_this();
  auto close_acceptor = [self, countdown] {
    if (self->acceptor_) {
      ErrorCode ignored;
      self->acceptor_->close(ignored);
      self->acceptor_.reset();
    }
    countdown->Done();
  };
  if (running) {
    asio::dispatch(pool_.Get(0), std::move(close_acceptor));
  } else {
    close_acceptor();
  }
  for (auto& conn : conns) {
    auto close = [conn, countdown] {
      // Cancels what the connection awaits, the handler included, then closes the socket.
      conn->cancel.emit(asio::cancellation_type::terminal);
      ErrorCode ignored;
      conn->socket.close(ignored);
      countdown->Done();
    };
    if (running) {
      asio::dispatch(conn->socket.get_executor(), std::move(close));
    } else {
      close();
    }
  }
  if (!wait) return;

  const auto deadline = SteadyClock::now() + kStopWait;
  {
    std::unique_lock lock(countdown->mu);
    countdown->cv.wait_until(lock, deadline, [&] { return countdown->pending == 0; });
  }
  std::unique_lock lock(mu_);
  if (!cv_.wait_until(lock, deadline, [&] { return live_ == 0; })) {
    spdlog::warn("http server: {} connection(s) still finishing {} ms after Stop", live_,
                 kStopWait.count());
  }
}

// ---------------------------------------------------------------------------------------------------
// Server

Server::Server(runtime::IoPool& pool, ServerOptions options, Handler& handler)
    : impl_(std::make_shared<Impl>(pool, std::move(options), handler)) {}

Server::~Server() { Stop(); }

Status Server::Start() { return impl_->Start(); }

uint16_t Server::port() const { return impl_->port_.load(); }

void Server::Stop() { impl_->Stop(); }

size_t Server::open_connections() const { return impl_->open_.load(std::memory_order_relaxed); }

uint64_t Server::accepted_connections() const {
  return impl_->accepted_.load(std::memory_order_relaxed);
}

}  // namespace dtx::http
