#include "tools/dtx/admin_client.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>
#include <utility>

#include "http/client.h"
#include "http/tls.h"

// GCC 12: a false -Wmismatched-new-delete for Asio's awaitable frames (see engine_internal.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dtx::tools {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

asio::awaitable<void> SendInto(http::ClientOptions options, http::ClientRequest request,
                               std::optional<Result<http::ClientResponse>>* out) {
  http::Client client(co_await asio::this_coro::executor, std::move(options));
  out->emplace(co_await client.Send(std::move(request)));
}

}  // namespace

Result<http::ClientResponse> SendBlocking(http::ClientRequest request, const std::string& ca_file) {
  http::ClientOptions options;
  if (!ca_file.empty()) {
    auto tls = http::MakeClientTlsContext(ca_file);
    if (!tls.ok()) return tls.status();
    options.tls = std::move(tls).value();
  }
  asio::io_context ioc{1};
  std::optional<Result<http::ClientResponse>> out;
  std::optional<Status> failure;
  asio::co_spawn(ioc, SendInto(std::move(options), std::move(request), &out),
                 [&failure](std::exception_ptr e) {
                   if (!e) return;
                   try {
                     std::rethrow_exception(e);
                   } catch (const std::exception& ex) {
                     failure.emplace(Status::Internal(ex.what()));
                   }
                 });
  ioc.run();
  if (failure) return *failure;
  if (!out) return Status::Internal("the request did not complete");
  return std::move(*out);
}

void PrintUnreachable(const std::string& server, const Status& why) {
  std::fprintf(stderr, "dtx: cannot reach %s: %s\n", server.c_str(), why.ToString().c_str());
  if (why.message().find("certificate verify failed") != std::string::npos) {
    std::fprintf(stderr,
                 "dtx: the server's certificate did not verify: give the CA that signed it with "
                 "--ca-file or DTX_CA_FILE\n");
  }
}

std::string Time(int64_t ms) {
  if (ms <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string S(const json::value& v, const char* k) {
  if (!v.is_object()) return {};
  const json::value* x = v.get_object().if_contains(k);
  if (x == nullptr) return {};
  if (x->is_string()) return std::string(x->get_string());
  if (x->is_int64()) return std::to_string(x->get_int64());
  if (x->is_bool()) return x->get_bool() ? "yes" : "no";
  return {};
}

int64_t I(const json::value& v, const char* k) {
  if (!v.is_object()) return 0;
  const json::value* x = v.get_object().if_contains(k);
  return x && x->is_int64() ? x->get_int64() : 0;
}

std::string Cut(std::string s, size_t n) {
  for (char& c : s) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  if (s.size() > n) s = s.substr(0, n - 3) + "...";
  return s;
}

// Calls the admin API; prints the refusal and returns nullopt with `exit_code` set on failure.
std::optional<json::value> Call(const Common& c, const std::string& method, const std::string& path,
                                const std::string& body, int* exit_code) {
  http::ClientRequest req;
  req.method = method;
  std::string base = c.server;
  while (!base.empty() && base.back() == '/') base.pop_back();
  req.url = base + "/api/dtx/admin/" + path;
  req.body = body;
  req.timeout = std::chrono::milliseconds(static_cast<int64_t>(c.timeout_s * 1000));
  if (!body.empty()) req.headers.emplace_back("Content-Type", "application/json");
  if (!c.token.empty()) req.headers.emplace_back("Authorization", "Bearer " + c.token);
  auto r = SendBlocking(std::move(req), c.ca_file);
  if (!r.ok()) {
    if (r.status().message().starts_with("--ca-file")) {
      std::fprintf(stderr, "dtx: %s\n", r.status().message().c_str());
    } else {
      PrintUnreachable(c.server, r.status());
    }
    *exit_code = 2;
    return std::nullopt;
  }
  boost::system::error_code ec;
  json::value v = json::parse(r->body, ec);
  if (r->status != 200) {
    std::string msg = ec ? Cut(r->body, 300) : S(v, "message");
    std::fprintf(stderr, "dtx: refused (%d): %s\n", r->status, msg.c_str());
    if (!ec && v.is_object() && v.get_object().contains("current")) {
      const json::value& cur = v.get_object().at("current");
      std::fprintf(stderr, "dtx: current state: %s is %s\n", S(cur, "gid").c_str(),
                   S(cur, "status").c_str());
    }
    if (r->status == 401 || r->status == 403) {
      std::fprintf(stderr, "dtx: give the admin token with --token or DTX_TOKEN\n");
    }
    *exit_code = 1;
    return std::nullopt;
  }
  if (ec) {
    std::fprintf(stderr, "dtx: the server answered something that is not JSON\n");
    *exit_code = 2;
    return std::nullopt;
  }
  return v;
}

void PrintJson(const json::value& v) { std::printf("%s\n", json::serialize(v).c_str()); }

std::optional<json::value> Fetch(const Common& c, const std::string& method,
                                 const std::string& path, const std::string& body, int* exit_code) {
  std::optional<json::value> v = Call(c, method, path, body, exit_code);
  if (v && c.json_out) {
    PrintJson(*v);
    *exit_code = 0;
    return std::nullopt;
  }
  return v;
}

void PrintNextPosition(const json::value& page) {
  const int64_t next = I(page, "next_position");
  if (next > 0) std::printf("(more: --position %lld)\n", static_cast<long long>(next));
}

void PrintAudit(const json::array& audit) {
  if (audit.empty()) return;
  std::printf("\n%-19s %-12s %-8s %-22s %s\n", "WHEN (UTC)", "WHO", "ACTION", "STATUS", "REASON");
  for (const auto& a : audit) {
    std::printf("%-19s %-12s %-8s %-22s %s\n", Time(I(a, "time_ms")).c_str(),
                Cut(S(a, "who"), 12).c_str(), S(a, "action").c_str(),
                (S(a, "status_before") + " -> " + S(a, "status_after")).c_str(),
                Cut(S(a, "reason"), 60).c_str());
  }
}

void AddCommon(CLI::App* cmd, Common& c) {
  cmd->add_option("--server", c.server, "the coordinator's base URL")
      ->envname("DTX_SERVER")
      ->capture_default_str();
  cmd->add_option("--token", c.token, "admin token (see dtx server --admin-token)")
      ->envname("DTX_TOKEN");
  cmd->add_flag("--json", c.json_out, "print the server's JSON answer");
  cmd->add_option("--timeout", c.timeout_s, "seconds to wait for the answer")
      ->capture_default_str();
  cmd->add_option("--ca-file", c.ca_file,
                  "PEM file of CA certificates to trust for an https server, besides the "
                  "system's store")
      ->envname("DTX_CA_FILE");
}

}  // namespace dtx::tools
