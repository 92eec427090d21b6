#include "http/client.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <deque>
#include <unordered_map>
#include <vector>

#include "http/url_internal.h"

// GCC 12 reports a false -Wmismatched-new-delete for Asio's awaitable frames: operator new uses
// aligned_alloc and the matching operator delete uses free, which GCC cannot pair once inlined
// (GCC bug 109224).
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
using detail::Authority;
using detail::HostKey;
using detail::ResolveLocation;

namespace {

constexpr auto kUse = asio::as_tuple(asio::use_awaitable);
constexpr uint32_t kMaxResponseHeaderBytes = 64 * 1024;
// Resolved names are reused for this long.
constexpr std::chrono::seconds kDnsTtl{30};
constexpr std::chrono::milliseconds kMaxTimeout = std::chrono::hours(24 * 365);

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// Errors on a reused connection that mean the server had closed it before our request arrived.
bool IsStaleConnectionError(const ErrorCode& ec) {
  return ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted;
}

}  // namespace

namespace {

using TlsStream = asio::ssl::stream<beast::tcp_stream&>;

// A kept-alive connection with the bytes read past the last response (normally none).
struct PooledConn {
  explicit PooledConn(const asio::any_io_executor& executor) : stream(executor) {}
  beast::tcp_stream stream;
  std::unique_ptr<TlsStream> tls;  // over `stream` for https
  beast::flat_buffer buffer;
  SteadyClock::time_point idle_since;
};

struct HostPool;

// A request waiting for a connection slot of a full host. Lives in the waiting coroutine's frame;
// the releasing side hands it a connection (or an empty slot to connect with) and cancels its
// timer.
struct Waiter {
  Waiter(const asio::any_io_executor& executor, HostPool* pool) : timer(executor), pool(pool) {}
  ~Waiter();
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  asio::steady_timer timer;
  HostPool* pool;
  std::unique_ptr<PooledConn> conn;  // may stay null: the slot is granted, connect a new one
  bool granted = false;
};

struct HostPool {
  std::vector<std::unique_ptr<PooledConn>> idle;  // most recently used last
  size_t open = 0;  // connections counted against max_connections_per_host: in use + idle
  std::deque<Waiter*> waiters;
};

Waiter::~Waiter() {
  if (!granted) {
    auto it = std::find(pool->waiters.begin(), pool->waiters.end(), this);
    if (it != pool->waiters.end()) pool->waiters.erase(it);
  }
}

struct DnsEntry {
  std::vector<tcp::endpoint> endpoints;
  SteadyClock::time_point expires;
};

// What is sent, shared by the hops of a redirect chain.
struct Outgoing {
  std::string method;
  HeaderList headers;
  std::string body;
};

std::string BuildHead(const ParsedUrl& url, const Outgoing& out) {
  std::string head;
  head.reserve(128 + out.headers.size() * 32);
  head += out.method;
  head += ' ';
  head += url.target;
  head += " HTTP/1.1\r\n";
  bool has_host = false;
  bool has_user_agent = false;
  for (const auto& [name, value] : out.headers) {
    if (beast::iequals(name, "content-length") || beast::iequals(name, "transfer-encoding"))
      continue;
    has_host = has_host || beast::iequals(name, "host");
    has_user_agent = has_user_agent || beast::iequals(name, "user-agent");
    head += name;
    head += ": ";
    head += value;
    head += "\r\n";
  }
  if (!has_host) {
    head += "Host: ";
    head += Authority(url);
    head += "\r\n";
  }
  if (!has_user_agent) head += "User-Agent: dtx\r\n";
  if (!out.body.empty() || out.method == "POST" || out.method == "PUT" || out.method == "PATCH") {
    head += "Content-Length: ";
    head += std::to_string(out.body.size());
    head += "\r\n";
  }
  head += "\r\n";
  return head;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Client::Impl: everything runs on `executor`; no locks.

struct Client::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::any_io_executor ex, ClientOptions opts)
      : executor(std::move(ex)), options(std::move(opts)) {}

  static asio::awaitable<Result<ClientResponse>> Send(std::shared_ptr<Impl> self,
                                                      ClientRequest request);
  static asio::awaitable<Result<ClientResponse>> Exchange(std::shared_ptr<Impl> self, ParsedUrl url,
                                                          std::shared_ptr<const Outgoing> out,
                                                          SteadyClock::time_point deadline,
                                                          std::chrono::milliseconds timeout);
  // A new connection to `url`'s host: resolved, connected and, for https, the TLS handshake done
  // with the host name verified.
  static asio::awaitable<Result<std::unique_ptr<PooledConn>>> Connect(
      std::shared_ptr<Impl> self, const ParsedUrl& url, SteadyClock::time_point deadline,
      std::chrono::milliseconds timeout);
  static asio::awaitable<Result<std::vector<tcp::endpoint>>> Resolve(
      std::shared_ptr<Impl> self, std::string host, uint16_t port, SteadyClock::time_point deadline,
      std::chrono::milliseconds timeout);

  // Returns a connection (or only its slot, when conn is null) to the host's pool: handed to the
  // first waiter, kept idle, or closed.
  void Release(HostPool& pool, std::unique_ptr<PooledConn> conn, bool reusable) {
    if (conn && reusable && !closed) {
      if (!pool.waiters.empty()) {
        Grant(pool, std::move(conn));
        return;
      }
      if (pool.idle.size() < options.max_idle_per_host) {
        conn->idle_since = SteadyClock::now();
        pool.idle.push_back(std::move(conn));
        return;
      }
    }
    conn.reset();  // closes the socket
    if (!pool.waiters.empty()) {
      Grant(pool, nullptr);  // the slot passes to the waiter, which connects
      return;
    }
    --pool.open;
  }

  static void Grant(HostPool& pool, std::unique_ptr<PooledConn> conn) {
    Waiter* waiter = pool.waiters.front();
    pool.waiters.pop_front();
    waiter->granted = true;
    waiter->conn = std::move(conn);
    waiter->timer.cancel();
  }

  Status MapError(const ErrorCode& ec, std::string_view what, const std::string& host,
                  std::chrono::milliseconds timeout) const {
    if (ec == beast::error::timeout) {
      return Status::Timeout(
          fmt::format("{} {}: no answer within {} ms", what, host, timeout.count()));
    }
    if (ec == bhttp::error::body_limit) {
      return Status::TooLarge(fmt::format("response from {} is larger than {} bytes", host,
                                          options.max_response_bytes));
    }
    if (ec == bhttp::error::header_limit) {
      return Status::TooLarge(fmt::format("response header from {} is larger than {} bytes", host,
                                          kMaxResponseHeaderBytes));
    }
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category()) {
      return Status::Unavailable(
          fmt::format("malformed HTTP response from {}: {}", host, ec.message()));
    }
    return Status::Unavailable(fmt::format("{} {}: {}", what, host, ec.message()));
  }

  asio::any_io_executor executor;
  ClientOptions options;  // options.tls is set on the first https request when null
  std::unordered_map<std::string, HostPool> hosts;  // never erased: HostPool addresses stay valid
  std::unordered_map<std::string, DnsEntry> dns;
  bool closed = false;  // the Client was destroyed: nothing is pooled any more
};

namespace {

// Holds a connection slot of one host for one request; gives it back however the request ends.
template <class Impl>
class Lease {
 public:
  Lease(std::shared_ptr<Impl> impl, HostPool* pool) : impl_(std::move(impl)), pool_(pool) {}
  ~Lease() {
    if (holds_slot) impl_->Release(*pool_, std::move(conn), reusable);
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  std::unique_ptr<PooledConn> conn;
  bool holds_slot = false;
  bool reusable = false;

 private:
  std::shared_ptr<Impl> impl_;
  HostPool* pool_;
};

// Cancels a name resolution when the deadline passes. Holds the resolver weakly: the resolution may
// have finished (and its owner gone) by the time the timer fires.
struct ResolveTimeout {
  std::weak_ptr<tcp::resolver> resolver;
  void operator()(const ErrorCode& ec) const {
    if (ec) return;
    if (auto r = resolver.lock()) r->cancel();
  }
};

}  // namespace

asio::awaitable<Result<std::vector<tcp::endpoint>>> Client::Impl::Resolve(
    std::shared_ptr<Impl> self, std::string host, uint16_t port, SteadyClock::time_point deadline,
    std::chrono::milliseconds timeout) {
  ErrorCode ec;
  const auto address = asio::ip::make_address(host, ec);
  if (!ec) co_return std::vector<tcp::endpoint>{tcp::endpoint(address, port)};

  const std::string key = host + ":" + std::to_string(port);
  const auto now = SteadyClock::now();
  if (auto it = self->dns.find(key); it != self->dns.end() && it->second.expires > now) {
    co_return it->second.endpoints;
  }
  // getaddrinfo runs on Asio's resolver thread; cancelling only stops the wait for it.
  auto resolver = std::make_shared<tcp::resolver>(self->executor);
  asio::steady_timer timer(self->executor);
  timer.expires_at(deadline);
  timer.async_wait(ResolveTimeout{resolver});
  auto [rec, results] = co_await resolver->async_resolve(host, std::to_string(port), kUse);
  timer.cancel();
  if (rec == asio::error::operation_aborted && SteadyClock::now() >= deadline) {
    co_return Status::Timeout(
        fmt::format("resolve {}: no answer within {} ms", host, timeout.count()));
  }
  if (rec || results.empty()) {
    co_return Status::Unavailable(
        fmt::format("resolve {}: {}", host, rec ? rec.message() : "no address"));
  }
  std::vector<tcp::endpoint> endpoints;
  for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  self->dns[key] = DnsEntry{endpoints, now + kDnsTtl};
  co_return endpoints;
}

asio::awaitable<Result<std::unique_ptr<PooledConn>>> Client::Impl::Connect(
    std::shared_ptr<Impl> self, const ParsedUrl& url, SteadyClock::time_point deadline,
    std::chrono::milliseconds timeout) {
  const std::string key = HostKey(url);
  auto endpoints = co_await Resolve(self, url.host, url.port, deadline, timeout);
  if (!endpoints.ok()) co_return endpoints.status();
  if (const auto& policy = self->options.url_policy) {  // DNS rebinding: check what it resolved to
    Status refused = Status::Ok();
    std::erase_if(*endpoints, [&](const tcp::endpoint& e) {
      Status s = policy->CheckAddress(url, e.address());
      if (s.ok()) return false;
      if (refused.ok()) refused = std::move(s);
      return true;
    });
    if (endpoints->empty()) co_return refused;
  }
  auto conn = std::make_unique<PooledConn>(self->executor);
  conn->stream.expires_at(deadline);
  auto [ec, endpoint] = co_await conn->stream.async_connect(*endpoints, kUse);
  if (ec) co_return self->MapError(ec, "connect to", key, timeout);
  ErrorCode ignored;
  conn->stream.socket().set_option(tcp::no_delay(true), ignored);
  if (!url.tls) co_return conn;

  if (!self->options.tls) {
    auto made = MakeClientTlsContext("");
    if (!made.ok()) co_return made.status();
    self->options.tls = std::move(made).value();
  }
  conn->tls = std::make_unique<TlsStream>(conn->stream, *self->options.tls);
  ErrorCode address_ec;
  asio::ip::make_address(url.host, address_ec);
  // SNI for names (RFC 6066 forbids it for addresses); the certificate must name the host.
  if (address_ec && SSL_set_tlsext_host_name(conn->tls->native_handle(), url.host.c_str()) != 1) {
    co_return Status::InvalidArgument("TLS: bad server name '" + url.host + "'");
  }
  conn->tls->set_verify_mode(asio::ssl::verify_peer);
  conn->tls->set_verify_callback(asio::ssl::host_name_verification(url.host));
  auto [hec] = co_await conn->tls->async_handshake(asio::ssl::stream_base::client, kUse);
  if (hec) {
    if (hec == beast::error::timeout)
      co_return self->MapError(hec, "TLS handshake with", key, timeout);
    std::string why = hec.message();
    const long verify = SSL_get_verify_result(conn->tls->native_handle());
    if (verify != X509_V_OK) {
      why += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
    }
    co_return Status::Unavailable(fmt::format("TLS handshake with {}: {}", key, why));
  }
  co_return conn;
}

asio::awaitable<Result<ClientResponse>> Client::Impl::Exchange(std::shared_ptr<Impl> self,
                                                               ParsedUrl url,
                                                               std::shared_ptr<const Outgoing> out,
                                                               SteadyClock::time_point deadline,
                                                               std::chrono::milliseconds timeout) {
  const std::string key = HostKey(url);
  HostPool& pool = self->hosts[key];
  Lease<Impl> lease(self, &pool);

  // --- A connection slot: an idle connection, a new one under the limit, or wait for one.
  const auto now = SteadyClock::now();
  while (!pool.idle.empty()) {
    std::unique_ptr<PooledConn> conn = std::move(pool.idle.back());
    pool.idle.pop_back();
    if (now - conn->idle_since < self->options.max_idle) {
      lease.conn = std::move(conn);
      lease.holds_slot = true;
      break;
    }
    --pool.open;  // too old: closed as conn goes
  }
  if (!lease.holds_slot) {
    if (pool.open < self->options.max_connections_per_host) {
      ++pool.open;
      lease.holds_slot = true;
    } else {
      Waiter waiter(self->executor, &pool);
      waiter.timer.expires_at(deadline);
      pool.waiters.push_back(&waiter);
      co_await waiter.timer.async_wait(kUse);
      if (!waiter.granted) {
        co_return Status::Unavailable(fmt::format("{}: all {} connections stayed busy for {} ms",
                                                  key, self->options.max_connections_per_host,
                                                  timeout.count()));
      }
      lease.conn = std::move(waiter.conn);
      lease.holds_slot = true;
    }
  }

  const std::string head = BuildHead(url, *out);
  const bool head_request = out->method == "HEAD";
  // A reused connection may have been closed by the server while it sat in the pool; when it fails
  // before any byte of an answer arrives, the request is sent once more on a new connection.
  for (int attempt = 0;; ++attempt) {
    const bool reused = lease.conn != nullptr;
    if (!reused) {
      auto connected = co_await Connect(self, url, deadline, timeout);
      if (!connected.ok()) co_return connected.status();
      lease.conn = std::move(connected).value();
    }
    PooledConn& conn = *lease.conn;

    conn.stream.expires_at(deadline);
    const std::array<asio::const_buffer, 2> buffers{asio::buffer(head), asio::buffer(out->body)};
    ErrorCode wec;
    if (conn.tls) {
      std::tie(wec, std::ignore) = co_await asio::async_write(*conn.tls, buffers, kUse);
    } else {
      std::tie(wec, std::ignore) = co_await asio::async_write(conn.stream, buffers, kUse);
    }
    if (wec) {
      if (reused && attempt == 0 && wec != beast::error::timeout) {
        lease.conn.reset();
        continue;
      }
      co_return self->MapError(wec, "send to", key, timeout);
    }

    // Interim 1xx answers (other than 101) are skipped.
    for (;;) {
      bhttp::response_parser<bhttp::string_body> parser;
      parser.body_limit(self->options.max_response_bytes);
      parser.header_limit(kMaxResponseHeaderBytes);
      if (head_request) parser.skip(true);
      ErrorCode rec;
      if (conn.tls) {
        std::tie(rec, std::ignore) =
            co_await bhttp::async_read(*conn.tls, conn.buffer, parser, kUse);
      } else {
        std::tie(rec, std::ignore) =
            co_await bhttp::async_read(conn.stream, conn.buffer, parser, kUse);
      }
      if (rec) {
        if (reused && attempt == 0 && !parser.got_some() && conn.buffer.size() == 0 &&
            IsStaleConnectionError(rec)) {
          break;  // retry on a new connection
        }
        co_return self->MapError(rec, "read from", key, timeout);
      }
      auto msg = parser.release();
      const int status = static_cast<int>(msg.result_int());
      if (status >= 100 && status < 200 && status != 101) continue;

      conn.stream.expires_never();
      ClientResponse response;
      response.status = status;
      response.headers.reserve(8);
      for (const auto& field : msg) {
        response.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
      }
      response.body = std::move(msg.body());
      lease.reusable = msg.keep_alive() && conn.buffer.size() == 0;
      co_return response;
    }
    lease.conn.reset();
  }
}

asio::awaitable<Result<ClientResponse>> Client::Impl::Send(std::shared_ptr<Impl> self,
                                                           ClientRequest request) {
  const auto timeout = std::clamp(request.timeout, std::chrono::milliseconds(0), kMaxTimeout);
  const auto deadline = SteadyClock::now() + timeout;

  if (!IsHttpToken(request.method)) {
    co_return Status::InvalidArgument("bad HTTP method '" + request.method + "'");
  }
  for (const auto& [name, value] : request.headers) {
    if (!IsHttpToken(name) || !IsHttpFieldValue(value)) {
      co_return Status::InvalidArgument("bad request header '" + name + "'");
    }
  }
  auto parsed = ParseHttpUrl(request.url);
  if (!parsed.ok()) co_return parsed.status();
  ParsedUrl url = std::move(parsed).value();
  if (self->options.url_policy) {
    if (Status s = self->options.url_policy->CheckTarget(url); !s.ok()) co_return s;
  }

  auto out = std::make_shared<Outgoing>();
  out->method = std::move(request.method);
  out->headers = std::move(request.headers);
  out->body = std::move(request.body);

  for (int redirects = 0;; ++redirects) {
    Result<ClientResponse> result = co_await Exchange(self, url, out, deadline, timeout);
    if (!result.ok() || !IsRedirect(result->status) || redirects >= self->options.max_redirects) {
      co_return result;
    }
    std::string_view location;
    for (const auto& [name, value] : result->headers) {
      if (beast::iequals(name, "location")) location = value;
    }
    if (location.empty()) co_return result;
    auto next = ParseHttpUrl(ResolveLocation(url, location));
    if (!next.ok()) {
      co_return Status::InvalidArgument("redirect from " + Authority(url) + url.target + ": " +
                                        next.status().message());
    }
    if (self->options.url_policy) {
      if (Status s = self->options.url_policy->CheckTarget(*next); !s.ok()) {
        co_return Status::InvalidArgument("redirect from " + Authority(url) + url.target +
                                          " refused: " + s.message());
      }
    }
    const bool same_host = HostKey(next.value()) == HostKey(url);
    if (result->status == 303 || !same_host) {
      auto hop = std::make_shared<Outgoing>(*out);
      if (result->status == 303) {
        if (hop->method != "HEAD") hop->method = "GET";
        hop->body.clear();
      }
      if (!same_host) {  // credentials are not sent to another host
        std::erase_if(hop->headers, [](const auto& h) {
          return beast::iequals(h.first, "authorization") || beast::iequals(h.first, "cookie");
        });
      }
      out = std::move(hop);
    }
    url = std::move(next).value();
  }
}

// ---------------------------------------------------------------------------------------------------
// Client

Client::Client(asio::any_io_executor executor, ClientOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(options))) {}

Client::~Client() {
  // Requests still in flight keep the Impl alive and finish; their connections are not pooled.
  impl_->closed = true;
  for (auto& [key, pool] : impl_->hosts) {
    pool.open -= pool.idle.size();
    pool.idle.clear();
  }
}

asio::awaitable<Result<ClientResponse>> Client::Send(ClientRequest request) {
  return Impl::Send(impl_, std::move(request));
}

}  // namespace dtx::http
