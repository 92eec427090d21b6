#include "tests/support/harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/algorithm/string/predicate.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "http/client.h"

namespace dtx::testing {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

asio::awaitable<HttpResult> DoFetch(http::Client* client, http::ClientRequest req) {
  auto r = co_await client->Send(std::move(req));
  HttpResult out;
  if (r.ok()) {
    out.status = r->status;
    out.body = std::move(r->body);
    out.headers = std::move(r->headers);
  } else {
    out.body = r.status().ToString();
  }
  co_return out;
}

std::mutex g_fetch_ca_mu;
std::string g_fetch_ca;  // guarded by g_fetch_ca_mu

std::string FetchCaFile() {
  std::lock_guard lock(g_fetch_ca_mu);
  return g_fetch_ca;
}

struct FetchContext {
  runtime::IoPool pool{1};
  std::map<std::string, std::unique_ptr<http::Client>> clients;  // by CA file
  FetchContext() { pool.Start(); }
  http::Client* ClientFor(const std::string& ca_file) {
    auto& c = clients[ca_file];
    if (!c) {
      http::ClientOptions options;
      if (!ca_file.empty()) {
        auto tls = http::MakeClientTlsContext(ca_file);
        if (tls.ok()) options.tls = *tls;
      }
      c = std::make_unique<http::Client>(pool.Get(0).get_executor(), options);
    }
    return c.get();
  }
  ~FetchContext() {
    pool.Stop();
    pool.Join();
  }
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

void SetFetchCaFile(const std::string& path) {
  std::lock_guard lock(g_fetch_ca_mu);
  g_fetch_ca = path;
}

std::string HttpResult::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (boost::iequals(n, name)) return v;
  }
  return {};
}

HttpResult HttpFetch(const std::string& method, const std::string& url, const std::string& body,
                     std::chrono::milliseconds timeout) {
  return HttpFetchWithHeaders(method, url, body, {}, timeout);
}

HttpResult HttpFetchWithHeaders(const std::string& method, const std::string& url,
                                const std::string& body, const http::HeaderList& headers,
                                std::chrono::milliseconds timeout) {
  // One client per calling thread: http::Client is bound to one executor.
  thread_local FetchContext ctx;
  http::ClientRequest req;
  req.method = method;
  req.url = url;
  req.body = body;
  req.timeout = timeout;
  if (!body.empty()) req.headers.emplace_back("Content-Type", "application/json");
  for (const auto& h : headers) req.headers.push_back(h);
  auto fut = asio::co_spawn(ctx.pool.Get(0), DoFetch(ctx.ClientFor(FetchCaFile()), std::move(req)),
                            asio::use_future);
  if (fut.wait_for(timeout + std::chrono::seconds(2)) != std::future_status::ready) {
    return {0, "test harness: fetch did not complete"};
  }
  return fut.get();
}

std::string DtxBinary() { return DTX_BINARY_PATH; }

bool E2EOnPostgres() {
  const char* v = std::getenv("DTX_E2E_STORE");
  return v != nullptr && std::string(v) == "postgres";
}

std::string FreshPostgresStore() {
  const char* url = std::getenv("DTX_TEST_PG_URL");
  if (url == nullptr || *url == 0) return {};
  std::random_device rd;
  std::string base = url;
  return base + (base.find('?') == std::string::npos ? "?" : "&") + "schema=e2e_" +
         std::to_string(::getpid()) + "_" + std::to_string(rd() % 1000000);
}

std::string E2EStore(const std::string& dir) {
  if (!E2EOnPostgres()) return dir + "/dtx.db";
  return FreshPostgresStore();
}

CliResult RunDtxCommand(const std::string& args, const std::string& env) {
  static std::atomic<int> n{0};
  const std::string dir = TempDir("cli");
  const std::string id = std::to_string(n.fetch_add(1));
  const std::string out = dir + "/out" + id, err = dir + "/err" + id;
  const std::string cmd =
      env + " " + DtxBinary() + " " + args + " >" + out + " 2>" + err + " </dev/null";
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  auto slurp = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

std::string TempDir(const std::string& name) {
  static std::atomic<int> counter{0};
  auto dir = std::filesystem::temp_directory_path() /
             ("dtx-test-" + name + "-" + std::to_string(::getpid()) + "-" +
              std::to_string(counter.fetch_add(1)));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

ServerProcess::ServerProcess(std::string store_path, std::vector<std::string> args)
    : store_path_(std::move(store_path)), args_(std::move(args)) {}

ServerProcess::~ServerProcess() { Kill(); }

bool ServerProcess::Start(std::chrono::milliseconds timeout) {
  static std::atomic<int> counter{0};
  const bool postgres = store_path_.rfind("postgres", 0) == 0;
  log_path_ = (postgres ? TempDir("pglog") + "/server" : store_path_) + ".log" +
              std::to_string(counter.fetch_add(1));
  std::vector<std::string> argv_s = {DtxBinary(), "server",
                                     "--listen",  "127.0.0.1:0",
                                     "--store",   postgres ? store_path_ : "sqlite:" + store_path_};
  for (const auto& a : args_) {
    argv_s.push_back(a);
    if (a == "--tls-cert") scheme_ = "https";
  }
  int out_fd = ::open(log_path_.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (out_fd < 0) return false;
  pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) {
    ::dup2(out_fd, 1);
    ::dup2(out_fd, 2);
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  ::close(out_fd);
  pid_ = pid;
  std::regex ready(R"(dtx server ready: listening on [0-9.]+:(\d+))");
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::string log = ReadFile(log_path_);
    std::smatch m;
    if (std::regex_search(log, m, ready)) {
      port_ = static_cast<uint16_t>(std::stoi(m[1]));
      std::smatch a;
      if (std::regex_search(log, a, std::regex(R"(dtx admin listener ready: [0-9.]+:(\d+))"))) {
        admin_port_ = static_cast<uint16_t>(std::stoi(a[1]));
      }
      return true;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      std::fprintf(stderr, "dtx exited before ready:\n%s\n", log.c_str());
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Kill();
  return false;
}

void ServerProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

int ServerProcess::Terminate(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Kill();
  return -2;
}

std::string ServerProcess::Base() const {
  return scheme_ + "://127.0.0.1:" + std::to_string(port_);
}
std::string ServerProcess::AdminBase() const {
  return scheme_ + "://127.0.0.1:" + std::to_string(admin_port_);
}
std::string ServerProcess::Api(const std::string& op) const { return Base() + "/api/dtmsvr/" + op; }

Busi::Busi() : Busi(nullptr) {}

Busi::Busi(std::shared_ptr<http::TlsContext> tls) {
  pool_.Start();
  http::ServerOptions opts;
  opts.host = "127.0.0.1";
  opts.port = 0;
  if (tls) scheme_ = "https";
  opts.tls = std::move(tls);
  server_ = std::make_unique<http::Server>(pool_, opts, *this);
  Status s = server_->Start();
  DTX_ASSERT(s.ok());
}

Busi::~Busi() {
  server_->Stop();
  pool_.Stop();
  pool_.Join();
}

std::string Busi::Url(const std::string& path) const {
  return scheme_ + "://127.0.0.1:" + std::to_string(server_->port()) + path;
}

void Busi::Script(const std::string& path, std::vector<BusiAnswer> answers) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& q = scripts_[path];
  q.insert(q.end(), answers.begin(), answers.end());
}

void Busi::SetDefault(const std::string& path, BusiAnswer answer) {
  std::lock_guard<std::mutex> lock(mu_);
  defaults_[path] = std::move(answer);
}

BusiAnswer Busi::Next(const std::string& path) {
  auto& q = scripts_[path];
  if (!q.empty()) {
    BusiAnswer a = q.front();
    q.erase(q.begin());
    return a;
  }
  if (auto it = defaults_.find(path); it != defaults_.end()) return it->second;
  return BusiAnswer::Success();
}

std::vector<BusiCall> Busi::Calls(const std::string& path) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<BusiCall> out;
  for (const auto& c : calls_) {
    if (path.empty() || c.path == path) out.push_back(c);
  }
  return out;
}

size_t Busi::CallCount(const std::string& path) const { return Calls(path).size(); }

std::vector<BusiCall> Busi::CallsFor(const std::string& gid) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<BusiCall> out;
  for (const auto& c : calls_) {
    auto it = c.query.find("gid");
    if (it != c.query.end() && it->second == gid) out.push_back(c);
  }
  return out;
}

int Busi::MaxConcurrent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_in_flight_;
}

asio::awaitable<http::Response> Busi::Handle(http::Request request) {
  BusiCall call;
  call.method = request.method;
  call.path = request.path;
  call.body = request.body;
  call.start = std::chrono::steady_clock::now();
  for (const char* k : {"gid", "trans_type", "branch_id", "op"}) {
    if (auto v = request.QueryParam(k)) call.query[k] = *v;
  }
  for (const auto& [name, value] : request.headers) {
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    call.headers[lower] = value;
  }
  size_t index = 0;
  BusiAnswer answer;
  {
    std::lock_guard<std::mutex> lock(mu_);
    answer = Next(request.path);
    index = calls_.size();
    calls_.push_back(call);
    ++in_flight_;
    max_in_flight_ = std::max(max_in_flight_, in_flight_);
  }
  if (answer.delay_ms > 0) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(std::chrono::milliseconds(answer.delay_ms));
    co_await timer.async_wait(asio::use_awaitable);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
    calls_[index].end = std::chrono::steady_clock::now();
    calls_[index].answered_status = answer.status;
  }
  http::Response r;
  r.status = answer.status;
  r.body = answer.body;
  r.headers = answer.headers;
  co_return r;
}

TransView QueryTrans(const ServerProcess& server, const std::string& gid) {
  TransView v;
  HttpResult r = HttpFetch("GET", server.Api("query?gid=" + http::UrlEncode(gid)));
  if (r.status != 200) return v;
  boost::system::error_code ec;
  v.raw = json::parse(r.body, ec);
  if (ec || !v.raw.is_object()) return v;
  const auto& obj = v.raw.get_object();
  if (!obj.contains("transaction") || obj.at("transaction").is_null()) return v;
  v.found = true;
  const auto& t = obj.at("transaction").get_object();
  v.status = json::value_to<std::string>(t.at("status"));
  if (auto* rr = t.if_contains("rollback_reason"))
    v.rollback_reason = json::value_to<std::string>(*rr);
  for (const auto& b : obj.at("branches").get_array()) {
    v.branch_status.push_back(json::value_to<std::string>(b.at("status")));
    v.branch_ops.push_back(json::value_to<std::string>(b.at("op")));
  }
  return v;
}

TransView WaitStatus(const ServerProcess& server, const std::string& gid,
                     std::vector<std::string> statuses, std::chrono::milliseconds timeout) {
  TransView v;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  do {
    v = QueryTrans(server, gid);
    if (v.found && std::find(statuses.begin(), statuses.end(), v.status) != statuses.end())
      return v;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline);
  return v;
}

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  do {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  } while (std::chrono::steady_clock::now() < deadline);
  return pred();
}

std::string SagaBody(const std::string& gid,
                     const std::vector<std::pair<std::string, std::string>>& steps,
                     const std::vector<std::string>& payloads, const json::object& extra) {
  json::object o{{"gid", gid}, {"trans_type", "saga"}};
  json::array s;
  for (const auto& [action, compensate] : steps) {
    s.push_back(json::object{{"action", action}, {"compensate", compensate}});
  }
  o["steps"] = std::move(s);
  json::array p;
  for (const auto& x : payloads) p.push_back(json::string(x));
  o["payloads"] = std::move(p);
  for (const auto& kv : extra) o[kv.key()] = kv.value();
  return json::serialize(o);
}

}  // namespace dtx::testing
