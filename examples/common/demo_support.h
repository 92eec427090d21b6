// What the examples' `demo` subcommands share: child processes of the example's own binary with
// a ready line, a blocking HTTP call, and a checker that prints [ok]/[WRONG] lines.
//
// Thread-safety: none; a demo drives everything from its main thread. How it fails: Status values;
// children are stopped (SIGTERM, then SIGKILL after 5 s) when the Children object goes, and die
// with the demo (PR_SET_PDEATHSIG) if it is killed.
#pragma once

#include <sys/types.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dtx/client.h"
#include "dtx/status.h"

namespace dtx_examples {

class Children {
 public:
  ~Children() { StopAll(); }

  // Runs this executable with `args`, stdout on a pipe, and waits (bounded) for a line starting
  // with `ready_prefix`; returns that line without the prefix. Other output goes to stderr.
  dtx::Result<std::string> Spawn(const std::vector<std::string>& args,
                                 const std::string& ready_prefix,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // Spawn, then the port at the end of the ready line ("... listening on HOST:PORT").
  dtx::Result<uint16_t> SpawnListening(
      const std::vector<std::string>& args, const std::string& ready_prefix,
      std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // Runs this executable with `args` to completion (bounded) and returns its wait status.
  dtx::Result<int> Run(const std::vector<std::string>& args,
                       std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // SIGTERM to every child, bounded wait, SIGKILL for those still running.
  void StopAll();
  // The pid of the child started last (-1 when none); Kill9 SIGKILLs and reaps one child (a crash).
  pid_t last_pid() const { return children_.empty() ? -1 : children_.back(); }
  void Kill9(pid_t pid);

 private:
  std::vector<pid_t> children_;
};

// The port at the end of a ready line "... listening on HOST:PORT".
dtx::Result<uint16_t> PortOfReadyLine(const std::string& line);

struct HttpAnswer {
  int status = 0;
  std::string body;
};
// One blocking HTTP exchange on a private io_context (Boost.Beast; a new connection per call).
// kInvalidArgument for a URL that is not http://, kTimeout / kUnavailable for network failures.
dtx::Result<HttpAnswer> HttpCall(const std::string& method, const std::string& url,
                                 const std::string& body = {},
                                 std::chrono::milliseconds timeout = std::chrono::seconds(10));
// GET url, expecting 200 with a JSON object.
dtx::Result<boost::json::object> FetchJson(const std::string& url);
// GET http://127.0.0.1:PORT/state of every service of `ports` (name -> port).
dtx::Result<std::map<std::string, boost::json::object>> FetchStates(
    const std::map<std::string, uint16_t>& ports);

// Rows of table `table` in a /state dump whose column `key` equals `value`.
std::vector<boost::json::object> RowsWhere(const boost::json::object& state, const char* table,
                                           const char* key, const std::string& value);
int64_t IntOf(const boost::json::object& row, const char* column);  // -1 when absent
void PrintState(const std::string& title, const boost::json::object& state);
// The first row of `table` whose string column `key` equals `value` (and `key2` equals `value2`
// when given); nullptr when none. The pointer lives as long as `state`.
const boost::json::object* FindRow(const boost::json::object& state, const char* table,
                                   const char* key, const std::string& value,
                                   const char* key2 = nullptr, const std::string& value2 = {});
int64_t IntOf(const boost::json::object* row, const char* column);       // -1 when absent or no row
std::string TextOf(const boost::json::object* row, const char* column);  // "<none>" when absent
// "  WHAT GID: STATUS", the rollback reason when there is one, then a line per branch.
void PrintTransaction(const char* what, const dtx::TransactionInfo& t);
// The demo's data directory: `given` (created if missing), or a new /tmp/NAME-XXXXXX when empty.
// Each SQLite database of `fresh_dbs` (with its -wal and -shm files) is removed from it, so the
// demo starts from scratch.
dtx::Result<std::string> DemoDataDir(const std::string& given, const std::string& name,
                                     const std::vector<std::string>& fresh_dbs = {});
// Prints "DEMO OK: <ok_message>" or "DEMO FAILED: N check(s) wrong"; the demo's exit status.
int DemoVerdict(int failures, const char* ok_message);

class Checker {
 public:
  void Expect(bool ok, const std::string& what);
  int failures() const { return failures_; }

 private:
  int failures_ = 0;
};

}  // namespace dtx_examples
