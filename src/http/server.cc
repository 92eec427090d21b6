#include "http/server.h"

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
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <charconv>
#include <condition_variable>
#include <exception>
#include <limits>
#include <mutex>
#include <unordered_map>

namespace dtx::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using ErrorCode = boost::system::error_code;

// ---------------------------------------------------------------------------------------------------
// Request helpers and URL coding.

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string UrlDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(c);  // a stray '%' is kept as is
    }
  }
  return out;
}

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == '-' ||
        u == '.' || u == '_' || u == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xF]);
    }
  }
  return out;
}

std::string_view Request::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (beast::iequals(key, name)) return value;
  }
  return {};
}

std::optional<std::string> Request::QueryParam(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    // Keys are compared decoded only when they need it, which keeps the common case
    // allocation-free.
    const bool match =
        key.find_first_of("%+") == std::string_view::npos ? key == name : UrlDecode(key) == name;
    if (match) return UrlDecode(value);
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------------
// Connections.

namespace {

using Executor = asio::io_context::executor_type;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;
using Timer = asio::basic_waitable_timer<SteadyClock, asio::wait_traits<SteadyClock>, Executor>;

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

void SetDeadline(const std::shared_ptr<Connection>& conn, Phase phase,
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

void AppendJsonEscaped(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out.push_back(kHex[(c >> 4) & 0xF]);
          out.push_back(kHex[c & 0xF]);
        } else {
          out.push_back(c);
        }
    }
  }
}

std::string ErrorJson(std::string_view message, std::string_view code) {
  std::string out = R"({"message":")";
  AppendJsonEscaped(out, message);
  out += R"(","code":")";
  out += code;
  out += "\"}";
  return out;
}

void AppendNumber(std::string& out, uint64_t n) {
  char digits[24];
  const auto [end, ec] = std::to_chars(std::begin(digits), std::end(digits), n);
  out.append(digits, end);
}

bool IsTokenImpl(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F || c == ':' || c == '(' || c == ')' || c == ',' || c == '/' ||
        c == ';' || c == '<' || c == '=' || c == '>' || c == '?' || c == '@' || c == '[' ||
        c == '\\' || c == ']' || c == '{' || c == '}' || c == '"') {
      return false;
    }
  }
  return true;
}

bool IsFieldValueImpl(std::string_view s) {
  return s.find_first_of("\r\n", 0) == std::string_view::npos &&
         s.find('\0') == std::string_view::npos;
}

bool HasCloseToken(std::string_view value) {
  // "Connection: close" or a list containing it.
  for (size_t i = 0; i + 5 <= value.size(); ++i) {
    if (beast::iequals(value.substr(i, 5), "close")) return true;
  }
  return false;
}

// A handler may answer any final status; anything else is a bug and becomes a 500.
bool ValidStatus(int status) { return status >= 200 && status <= 999; }

// Whether a response with this status carries no body (RFC 9110 6.4.1).
bool StatusHasNoBody(int status) { return status < 200 || status == 204 || status == 304; }

// Writes the status line and headers of `response` into `out` (reused per connection). Returns the
// effective keep-alive: a handler may close the connection with its own "Connection: close".
// `response.status` must be valid (see ValidStatus).
bool SerializeHead(std::string& out, const Response& response, bool keep_alive, bool http10) {
  const int status = response.status;
  std::string_view reason =
      bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(status)));
  if (bhttp::int_to_status(static_cast<unsigned>(status)) == bhttp::status::unknown)
    reason = "Unknown";
  const bool no_body = StatusHasNoBody(status);

  out.clear();
  out += "HTTP/1.1 ";
  AppendNumber(out, static_cast<uint64_t>(status));
  out += ' ';
  out += reason;
  out += "\r\n";
  if (!response.content_type.empty() && IsHttpFieldValue(response.content_type)) {
    out += "Content-Type: ";
    out += response.content_type;
    out += "\r\n";
  }
  for (const auto& [name, value] : response.headers) {
    if (!IsHttpToken(name) || !IsHttpFieldValue(value)) {
      spdlog::warn("http server: handler returned an invalid header '{}'; dropped", name);
      continue;
    }
    if (beast::iequals(name, "content-length") || beast::iequals(name, "transfer-encoding"))
      continue;
    if (!response.content_type.empty() && beast::iequals(name, "content-type")) continue;
    if (beast::iequals(name, "connection")) {
      if (HasCloseToken(value)) keep_alive = false;
      continue;
    }
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  if (!no_body) {
    out += "Content-Length: ";
    AppendNumber(out, response.body.size());
    out += "\r\n";
  }
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  return keep_alive;
}

bool ExpectsContinue(const bhttp::request<bhttp::string_body>& msg) {
  if (msg.version() < 11) return false;
  const auto it = msg.find(bhttp::field::expect);
  return it != msg.end() && beast::iequals(it->value(), "100-continue");
}

bool IsBeastHttpError(const ErrorCode& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category();
}

Request MakeRequest(bhttp::request<bhttp::string_body>&& msg) {
  Request req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  std::string_view path = req.target;
  // absolute-form (a request meant for a proxy): drop the scheme and authority
  if (path.size() > 7 && beast::iequals(path.substr(0, 7), "http://")) {
    const size_t slash = path.find_first_of("/?", 7);
    path = slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
  }
  const size_t q = path.find('?');
  if (q == std::string_view::npos) {
    req.path = std::string(path);
  } else {
    req.path = std::string(path.substr(0, q));
    req.query = std::string(path.substr(q + 1));
  }
  if (req.path.empty()) req.path = "/";
  size_t count = 0;
  for (auto it = msg.begin(); it != msg.end(); ++it) ++count;
  req.headers.reserve(count);
  for (const auto& field : msg) {
    req.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  req.body = std::move(msg.body());
  return req;
}

Response InternalError(std::string_view what) {
  Response r;
  r.status = 500;
  r.body = ErrorJson(std::string("internal error: ") + std::string(what), "INTERNAL");
  return r;
}

}  // namespace

bool IsHttpToken(std::string_view s) { return IsTokenImpl(s); }
bool IsHttpFieldValue(std::string_view s) { return IsFieldValueImpl(s); }

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
  co_await FailAndClose(
      self, conn, 503,
      ErrorJson(fmt::format("too many open connections (limit {})", limit), "UNAVAILABLE"), true);
}

asio::awaitable<void> Server::Impl::CloseGracefully(std::shared_ptr<Connection> conn) {
  Connection& c = *conn;
  ErrorCode ec;
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
  auto [ec, n] = co_await asio::async_write(c.socket, buffers, kUse);
  if (!ec && !c.timed_out && linger) {
    co_await CloseGracefully(conn);
  } else {
    ErrorCode ignored;
    c.socket.close(ignored);
  }
}

asio::awaitable<void> Server::Impl::Serve(std::shared_ptr<Impl> self,
                                          std::shared_ptr<Connection> conn) {
  const ServerOptions& options = self->options_;
  Connection& c = *conn;
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
        if (!continue_sent && parser->is_header_done() && ExpectsContinue(parser->get())) {
          continue_sent = true;
          auto [wec, wn] = co_await asio::async_write(c.socket, asio::buffer(k100Continue), kUse);
          if (wec) co_return;
        }
      }
      if (c.timed_out) {  // the watchdog fired while no read was pending
        ec = asio::error::operation_aborted;
        break;
      }
      auto [rec, n] = co_await c.socket.async_read_some(c.buffer.prepare(c.read_chunk), kUse);
      if (rec) {
        ec = rec;
        break;
      }
      c.buffer.commit(n);
      if (n == c.read_chunk && c.read_chunk < kReadChunkMax) c.read_chunk *= 2;
    }

    if (ec) {
      const bool inside_request = parser->got_some() || c.buffer.size() != 0;
      if (self->stopping_.load()) co_return;
      if (ec == asio::error::operation_aborted && c.timed_out) {
        if (c.phase == Phase::kReading) {
          co_await FailAndClose(self, conn, 408,
                                ErrorJson(fmt::format("request not received within {} ms",
                                                      options.read_timeout.count()),
                                          "TIMEOUT"),
                                true);
        }
        co_return;  // an idle connection timed out: close silently
      }
      if (ec == bhttp::error::body_limit) {
        co_await FailAndClose(self, conn, 413,
                              ErrorJson(fmt::format("request body too large (limit {} bytes)",
                                                    options.max_body_bytes),
                                        "TOO_LARGE"),
                              true);
        co_return;
      }
      if (ec == bhttp::error::header_limit) {
        co_await FailAndClose(self, conn, 431,
                              ErrorJson(fmt::format("request header too large (limit {} bytes)",
                                                    options.max_header_bytes),
                                        "TOO_LARGE"),
                              true);
        co_return;
      }
      if (IsBeastHttpError(ec)) {
        co_await FailAndClose(self, conn, 400,
                              ErrorJson("malformed request: " + ec.message(), "INVALID_ARGUMENT"),
                              true);
        co_return;
      }
      if (ec == asio::error::eof && inside_request) {
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

    // --- Handle it.
    auto msg = parser->release();
    const bool http10 = msg.version() == 10;
    const bool head_only = msg.method() == bhttp::verb::head;
    bool keep_alive = msg.keep_alive();
    c.phase = Phase::kHandling;
    Response response;
    try {
      response = co_await self->handler_.Handle(MakeRequest(std::move(msg)));
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
    auto [wec, wn] = co_await asio::async_write(c.socket, buffers, kUse);
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
