// The admin API's client for the `dtx` verbs (`dtx tx`, `dtx audit`, `dtx notify`): the options
// every verb takes (--server, --token, --json, --timeout), one blocking exchange with the admin
// API that prints a refusal, and the small formatting helpers of the human tables.
// Exit codes: 0 done, 1 refused by the server (the reason is printed), 2 the server unreachable
// or an answer that is not JSON.
#pragma once

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>

#include "http/client.h"
#include "util/status.h"

namespace dtx::tools {

struct Common {
  std::string server = "http://127.0.0.1:36789";
  std::string token;
  bool json_out = false;
  double timeout_s = 10;
  std::string ca_file;  // extra CAs for an https server (PEM), beside the system's store
};

// Adds --server (DTX_SERVER), --token (DTX_TOKEN), --json, --timeout and --ca-file (DTX_CA_FILE)
// to `cmd`.
void AddCommon(CLI::App* cmd, Common& c);

// One blocking HTTP exchange on a private io_context (a command line tool: blocking is fine). An
// https URL is verified against the system's trust store plus the PEM certificates of `ca_file`
// (when not empty; an unreadable or non-PEM file is kInvalidArgument naming it).
Result<http::ClientResponse> SendBlocking(http::ClientRequest request, const std::string& ca_file);
// Prints "dtx: cannot reach SERVER: why" to stderr, with a hint when a certificate did not
// verify.
void PrintUnreachable(const std::string& server, const Status& why);

// Calls METHOD /api/dtx/admin/PATH; on anything but a 200 with JSON, prints why to stderr and
// returns nullopt with `exit_code` set (1 refused, 2 unreachable or not JSON).
std::optional<boost::json::value> Call(const Common& c, const std::string& method,
                                       const std::string& path, const std::string& body,
                                       int* exit_code);

// Call, and with --json print the answer: nullopt then too, with `exit_code` 0. What is returned is
// to be printed as a table.
std::optional<boost::json::value> Fetch(const Common& c, const std::string& method,
                                        const std::string& path, const std::string& body,
                                        int* exit_code);

void PrintJson(const boost::json::value& v);
// The "(more: --position N)" line of a page whose next_position is not 0.
void PrintNextPosition(const boost::json::value& page);
// The table of a transaction's or a notification's audit records (nothing when there are none).
void PrintAudit(const boost::json::array& audit);
// "YYYY-MM-DD HH:MM:SS" (UTC) of unix milliseconds; "-" for 0.
std::string Time(int64_t ms);
// A field as text: strings as they are, integers in decimal, booleans yes/no; "" otherwise.
std::string S(const boost::json::value& v, const char* key);
// An integer field; 0 otherwise.
int64_t I(const boost::json::value& v, const char* key);
// One line of at most n characters ("..." when cut).
std::string Cut(std::string s, size_t n);

// Runs `fn` as the subcommand's callback and turns a non-zero code into the process's exit code.
template <class Fn>
void Run(CLI::App* cmd, Fn fn) {
  cmd->callback([fn] {
    const int rc = fn();
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace dtx::tools
