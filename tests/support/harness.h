// Test harness for end-to-end tests that run the real `dtx` binary:
//   ServerProcess  starts `dtx server` as a child process on 127.0.0.1:0, reads its ready line for
//   the
//                  port, and stops it with SIGTERM or kills it with SIGKILL;
//   Busi           a scriptable participant HTTP server (answers SUCCESS, FAILURE, ONGOING, errors,
//                  arbitrary bodies, after delays) that records every call;
//   HttpFetch      a blocking HTTP call for test code.
// All waits are bounded.
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "http/server.h"
#include "runtime/io_pool.h"

namespace dtx::testing {

struct HttpResult {
  int status = 0;  // 0 = transport error
  std::string body;
  http::HeaderList headers;  // the response's
  // The value of a response header (name compared case-insensitively), or "" without one.
  std::string Header(std::string_view name) const;
};

// Blocking request with a deadline; method GET or POST.
HttpResult HttpFetch(const std::string& method, const std::string& url,
                     const std::string& body = {},
                     std::chrono::milliseconds timeout = std::chrono::seconds(10));

// The same with extra request headers (e.g. Authorization).
HttpResult HttpFetchWithHeaders(const std::string& method, const std::string& url,
                                const std::string& body, const http::HeaderList& headers,
                                std::chrono::milliseconds timeout = std::chrono::seconds(10));

// https:// URLs fetched by HttpFetch* trust the CA certificates in this PEM file (besides the
// system store) from now on; empty = the system store only.
void SetFetchCaFile(const std::string& path);

class ServerProcess {
 public:
  // `args` are appended to `dtx server --listen 127.0.0.1:0 --store <store>`, where `store` is a
  // SQLite file path (sqlite:<path>) or a postgres:// URL (passed verbatim).
  ServerProcess(std::string store_path, std::vector<std::string> args = {});
  ~ServerProcess();  // SIGKILL if still running

  // Starts the process and waits (bounded) for the ready line. Returns false on failure.
  bool Start(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  void Kill();  // SIGKILL and reap
  int Terminate(
      std::chrono::milliseconds timeout = std::chrono::seconds(20));  // SIGTERM; exit code
  bool running() const { return pid_ > 0; }
  int pid() const { return pid_; }
  uint16_t port() const { return port_; }
  // The --admin-listen port (0 when the server has no admin listener).
  uint16_t admin_port() const { return admin_port_; }
  std::string AdminBase() const;                 // http(s)://127.0.0.1:admin_port
  std::string Api(const std::string& op) const;  // http://127.0.0.1:port/api/dtmsvr/<op>
  std::string Base() const;
  const std::string& log_path() const { return log_path_; }

 private:
  std::string store_path_;
  std::vector<std::string> args_;
  int pid_ = -1;
  uint16_t port_ = 0;
  uint16_t admin_port_ = 0;
  std::string scheme_ = "http";  // https when started with --tls-cert
  std::string log_path_;
};

// The store an end-to-end suite runs on: a SQLite file in `dir`, or — when DTX_E2E_STORE=postgres —
// a fresh schema in the PostgreSQL of DTX_TEST_PG_URL. Empty when postgres is asked for but
// DTX_TEST_PG_URL is not set (the suite should skip).
std::string E2EStore(const std::string& dir);
bool E2EOnPostgres();
// A postgres:// URL with a fresh schema in DTX_TEST_PG_URL's database; empty if it is unset.
std::string FreshPostgresStore();

// Path of the dtx binary under test (set by CMake).
std::string DtxBinary();
// A fresh temporary directory for one test.
std::string TempDir(const std::string& name);

// `dtx ARGS` run to its end with stdin from /dev/null and `env` (e.g. "DTX_CA_FILE=x") before it;
// its exit code (-1 when it did not exit) and what it wrote on stdout and stderr.
struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
CliResult RunDtxCommand(const std::string& args, const std::string& env = {});

struct BusiAnswer {
  int status = 200;
  std::string body = R"({"dtm_result":"SUCCESS"})";
  int delay_ms = 0;
  http::HeaderList headers;  // extra response headers (e.g. Location of a redirect)
  static BusiAnswer Success() { return {}; }
  static BusiAnswer Failure() {
    return {409, R"({"dtm_result":"FAILURE","message":"busi failure"})", 0};
  }
  static BusiAnswer Ongoing() { return {425, R"({"dtm_result":"ONGOING"})", 0}; }
  static BusiAnswer Error() { return {500, R"({"message":"busi error"})", 0}; }
};

struct BusiCall {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
  std::chrono::steady_clock::time_point start;
  std::chrono::steady_clock::time_point end;
  int answered_status = 0;
};

class Busi final : public http::Handler {
 public:
  Busi();
  // An https participant when `tls` is set (http::MakeServerTlsContext).
  explicit Busi(std::shared_ptr<http::TlsContext> tls);
  ~Busi() override;

  std::string Url(const std::string& path) const;
  // Answers for `path`, consumed in order; when none is left the default answer is used.
  void Script(const std::string& path, std::vector<BusiAnswer> answers);
  void SetDefault(const std::string& path, BusiAnswer answer);
  std::vector<BusiCall> Calls(const std::string& path = {}) const;  // all paths when empty
  size_t CallCount(const std::string& path) const;
  // Calls for one gid in arrival order.
  std::vector<BusiCall> CallsFor(const std::string& gid) const;
  int MaxConcurrent() const;
  // TCP connections the participant accepted so far (connection reuse by the coordinator).
  uint64_t AcceptedConnections() const { return server_->accepted_connections(); }

  boost::asio::awaitable<http::Response> Handle(http::Request request) override;

 private:
  BusiAnswer Next(const std::string& path);
  mutable std::mutex mu_;
  std::map<std::string, std::vector<BusiAnswer>> scripts_;
  std::map<std::string, BusiAnswer> defaults_;
  std::vector<BusiCall> calls_;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
  runtime::IoPool pool_{2};
  std::unique_ptr<http::Server> server_;
  std::string scheme_ = "http";
};

// Query helpers (against a running server).
struct TransView {
  bool found = false;
  std::string status;
  std::string rollback_reason;
  std::vector<std::string> branch_status;  // in creation order
  std::vector<std::string> branch_ops;
  boost::json::value raw;
};
TransView QueryTrans(const ServerProcess& server, const std::string& gid);
// Polls until the transaction's status is one of `statuses` or the timeout passes.
TransView WaitStatus(const ServerProcess& server, const std::string& gid,
                     std::vector<std::string> statuses,
                     std::chrono::milliseconds timeout = std::chrono::seconds(20));
bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// A saga submit body: steps (action, compensate) with one payload each.
std::string SagaBody(const std::string& gid,
                     const std::vector<std::pair<std::string, std::string>>& steps,
                     const std::vector<std::string>& payloads,
                     const boost::json::object& extra = {});

}  // namespace dtx::testing
