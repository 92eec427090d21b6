#include "examples/common/demo_support.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <optional>
#include <thread>

namespace dtx_examples {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

dtx::Result<std::string> SelfExe() {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return dtx::Status::Internal("cannot find my own executable");
  self[n] = '\0';
  return std::string(self);
}

// fork + exec of this executable; stdout to `out_fd` (or inherited when -1).
dtx::Result<pid_t> ForkSelf(const std::vector<std::string>& args, int out_fd, int close_fd) {
  auto self = SelfExe();
  if (!self.ok()) return self.status();
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return dtx::Status::Internal("fork failed");
  if (pid == 0) {
    if (out_fd >= 0) dup2(out_fd, STDOUT_FILENO);
    if (close_fd >= 0) close(close_fd);
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // dies with the demo
    if (getppid() != parent) _exit(1);
    std::vector<std::string> argv_s = args;
    argv_s.insert(argv_s.begin(), *self);
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(self->c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

struct ParsedUrl {
  std::string host;
  std::string port;
  std::string target;  // path and query, at least "/"
};

// http://HOST[:PORT][/TARGET]; nullopt for anything else (the demos only call plain http URLs).
std::optional<ParsedUrl> ParseHttpUrl(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (url.compare(0, kScheme.size(), kScheme) != 0) return std::nullopt;
  const size_t authority_begin = kScheme.size();
  const size_t slash = url.find('/', authority_begin);
  const std::string authority = url.substr(authority_begin, slash - authority_begin);
  ParsedUrl out;
  out.target = slash == std::string::npos ? "/" : url.substr(slash);
  const size_t colon = authority.rfind(':');
  out.host = colon == std::string::npos ? authority : authority.substr(0, colon);
  out.port = colon == std::string::npos ? "80" : authority.substr(colon + 1);
  if (out.host.empty() || out.port.empty()) return std::nullopt;
  return out;
}

// One exchange with Boost.Beast (a connection per call; the examples use only dtx's public API,
// so plain HTTP calls of their own go through Beast directly). Parameters by value: a coroutine.
boost::asio::awaitable<void> CallInto(std::string method, ParsedUrl url, std::string body,
                                      std::chrono::milliseconds timeout,
                                      std::optional<dtx::Result<HttpAnswer>>* out) {
  namespace beast = boost::beast;
  namespace http = boost::beast::http;
  using boost::asio::use_awaitable;
  try {
    auto executor = co_await boost::asio::this_coro::executor;
    boost::asio::ip::tcp::resolver resolver(executor);
    beast::tcp_stream stream(executor);
    stream.expires_after(timeout);
    auto endpoints = co_await resolver.async_resolve(url.host, url.port, use_awaitable);
    co_await stream.async_connect(endpoints, use_awaitable);
    http::request<http::string_body> request(http::string_to_verb(method), url.target, 11);
    request.set(http::field::host, url.host);
    if (!body.empty()) request.set(http::field::content_type, "application/json");
    request.body() = std::move(body);
    request.prepare_payload();
    co_await http::async_write(stream, request, use_awaitable);
    beast::flat_buffer buffer;
    http::response<http::string_body> response;
    co_await http::async_read(stream, buffer, response, use_awaitable);
    out->emplace(HttpAnswer{static_cast<int>(response.result_int()), std::move(response.body())});
  } catch (const boost::system::system_error& e) {
    if (e.code() == beast::error::timeout) {
      out->emplace(dtx::Status::Timeout(method + " " + url.target + ": " + e.what()));
    } else {
      out->emplace(dtx::Status::Unavailable(method + " " + url.target + ": " + e.what()));
    }
  }
}

}  // namespace

dtx::Result<std::string> Children::Spawn(const std::vector<std::string>& args,
                                         const std::string& ready_prefix,
                                         std::chrono::milliseconds timeout) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return dtx::Status::Internal("pipe failed");
  auto pid = ForkSelf(args, fds[1], fds[0]);
  close(fds[1]);
  if (!pid.ok()) {
    close(fds[0]);
    return pid.status();
  }
  children_.push_back(*pid);
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    size_t start = out.find(ready_prefix);
    if (start != std::string::npos && out.find('\n', start) != std::string::npos) {
      close(fds[0]);  // later output of the child goes nowhere (it only prints the ready line)
      std::string line = out.substr(start + ready_prefix.size());
      return line.substr(0, line.find('\n'));
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) break;
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[512];
    ssize_t got = read(fds[0], buf, sizeof(buf));
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  close(fds[0]);
  return dtx::Status::Unavailable("child '" + (args.empty() ? std::string() : args[0]) +
                                  "' printed no ready line (see its log above)");
}

dtx::Result<uint16_t> Children::SpawnListening(const std::vector<std::string>& args,
                                               const std::string& ready_prefix,
                                               std::chrono::milliseconds timeout) {
  auto line = Spawn(args, ready_prefix, timeout);
  if (!line.ok()) return line.status();
  return PortOfReadyLine(*line);
}

dtx::Result<int> Children::Run(const std::vector<std::string>& args,
                               std::chrono::milliseconds timeout) {
  fflush(stdout);
  auto pid = ForkSelf(args, -1, -1);
  if (!pid.ok()) return pid.status();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(*pid, &status, WNOHANG);
    if (r == *pid) return status;
    if (r < 0) return dtx::Status::Internal("waitpid failed");
    if (std::chrono::steady_clock::now() > deadline) {
      kill(*pid, SIGKILL);
      waitpid(*pid, nullptr, 0);
      return dtx::Status::Timeout("child did not finish in time");
    }
    std::this_thread::sleep_for(10ms);
  }
}

void Children::Kill9(pid_t pid) {
  for (auto it = children_.begin(); it != children_.end(); ++it) {
    if (*it != pid) continue;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    children_.erase(it);
    return;
  }
}

void Children::StopAll() {
  for (pid_t pid : children_) kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  for (pid_t pid : children_) {
    for (;;) {
      pid_t r = waitpid(pid, nullptr, WNOHANG);
      if (r == pid || r < 0) break;
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
  }
  children_.clear();
}

dtx::Result<uint16_t> PortOfReadyLine(const std::string& line) {
  try {
    return static_cast<uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
  } catch (...) {
    return dtx::Status::Internal("unexpected ready line: " + line);
  }
}

dtx::Result<HttpAnswer> HttpCall(const std::string& method, const std::string& url,
                                 const std::string& body, std::chrono::milliseconds timeout) {
  std::optional<ParsedUrl> parsed = ParseHttpUrl(url);
  if (!parsed) return dtx::Status::InvalidArgument("not an http:// URL: " + url);
  boost::asio::io_context ioc;
  std::optional<dtx::Result<HttpAnswer>> out;
  boost::asio::co_spawn(ioc, CallInto(method, std::move(*parsed), body, timeout, &out),
                        [](const std::exception_ptr&) {});
  ioc.run();
  if (!out) return dtx::Status::Internal("HTTP call did not complete");
  return std::move(*out);
}

dtx::Result<json::object> FetchJson(const std::string& url) {
  auto a = HttpCall("GET", url);
  if (!a.ok()) return a.status();
  if (a->status != 200) {
    return dtx::Status::Internal("GET " + url + ": HTTP " + std::to_string(a->status));
  }
  json::error_code ec;
  json::value v = json::parse(a->body, ec);
  if (ec || !v.is_object()) return dtx::Status::Internal("GET " + url + ": not a JSON object");
  return v.as_object();
}

std::vector<json::object> RowsWhere(const json::object& state, const char* table, const char* key,
                                    const std::string& value) {
  std::vector<json::object> out;
  const json::value* t = state.if_contains(table);
  if (t == nullptr || !t->is_array()) return out;
  for (const json::value& row : t->as_array()) {
    if (!row.is_object()) continue;
    const json::value* k = row.as_object().if_contains(key);
    if (k == nullptr) continue;
    const std::string text = k->is_string() ? std::string(k->as_string()) : json::serialize(*k);
    if (text == value) out.push_back(row.as_object());
  }
  return out;
}

int64_t IntOf(const json::object& row, const char* column) {
  const json::value* v = row.if_contains(column);
  if (v == nullptr) return -1;
  if (v->is_int64()) return v->as_int64();
  if (v->is_string()) {
    try {
      return std::stoll(std::string(v->as_string()));
    } catch (...) {
      return -1;
    }
  }
  return -1;
}

void PrintState(const std::string& title, const json::object& state) {
  std::printf("  %s:\n", title.c_str());
  for (const auto& [table, rows] : state) {
    if (!rows.is_array()) {
      std::printf("    %s: %s\n", std::string(table).c_str(), json::serialize(rows).c_str());
      continue;
    }
    std::printf("    %s (%zu rows)\n", std::string(table).c_str(), rows.as_array().size());
    for (const json::value& row : rows.as_array()) {
      std::printf("      %s\n", json::serialize(row).c_str());
    }
  }
}

void Checker::Expect(bool ok, const std::string& what) {
  std::printf("  [%s] %s\n", ok ? "ok" : "WRONG", what.c_str());
  if (!ok) ++failures_;
}

dtx::Result<std::map<std::string, json::object>> FetchStates(
    const std::map<std::string, uint16_t>& ports) {
  std::map<std::string, json::object> out;
  for (const auto& [name, port] : ports) {
    auto s = FetchJson("http://127.0.0.1:" + std::to_string(port) + "/state");
    if (!s.ok())
      return dtx::Status(s.status().code(), "state of " + name + ": " + s.status().message());
    out[name] = std::move(*s);
  }
  return out;
}

const json::object* FindRow(const json::object& state, const char* table, const char* key,
                            const std::string& value, const char* key2, const std::string& value2) {
  const json::value* t = state.if_contains(table);
  if (t == nullptr || !t->is_array()) return nullptr;
  auto matches = [](const json::object& o, const char* k, const std::string& v) {
    const json::value* x = o.if_contains(k);
    return x != nullptr && x->is_string() && x->as_string() == v;
  };
  for (const json::value& row : t->as_array()) {
    if (!row.is_object()) continue;
    const json::object& o = row.as_object();
    if (matches(o, key, value) && (key2 == nullptr || matches(o, key2, value2))) return &o;
  }
  return nullptr;
}

int64_t IntOf(const json::object* row, const char* column) {
  return row == nullptr ? -1 : IntOf(*row, column);
}

std::string TextOf(const json::object* row, const char* column) {
  if (row == nullptr) return "<none>";
  const json::value* v = row->if_contains(column);
  return v && v->is_string() ? std::string(v->as_string()) : "<none>";
}

void PrintTransaction(const char* what, const dtx::TransactionInfo& t) {
  std::printf("  %s %s: %s\n", what, t.gid.c_str(), t.status.c_str());
  if (!t.rollback_reason.empty()) std::printf("  rollback_reason: %s\n", t.rollback_reason.c_str());
  for (const dtx::BranchInfo& b : t.branches) {
    std::printf("    branch %s %-10s %-9s %s\n", b.branch_id.c_str(), b.op.c_str(),
                b.status.c_str(), b.url.c_str());
  }
}

dtx::Result<std::string> DemoDataDir(const std::string& given, const std::string& name,
                                     const std::vector<std::string>& fresh_dbs) {
  namespace fs = std::filesystem;
  std::string dir = given;
  if (dir.empty()) {
    std::string tmpl = "/tmp/" + name + "-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) return dtx::Status::Internal("mkdtemp failed");
    dir = tmpl;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return dtx::Status::Internal("cannot create " + dir + ": " + ec.message());
  for (const std::string& db : fresh_dbs) {
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(fs::path(dir) / (db + suffix), ec);
  }
  return dir;
}

int DemoVerdict(int failures, const char* ok_message) {
  if (failures == 0) {
    std::printf("\nDEMO OK: %s\n", ok_message);
    return 0;
  }
  std::printf("\nDEMO FAILED: %d check(s) wrong\n", failures);
  return 1;
}

}  // namespace dtx_examples
