#include "tools/dtx/saga_command.h"

#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "http/client.h"
#include "http/server.h"
#include "tools/dtx/admin_client.h"

namespace dtx::tools {
namespace {

struct SagaFlags {
  std::string server = "http://127.0.0.1:36789";
  std::string file;
  std::string name;  // default: the file name without its extension
  int timeout_s = 10;
  std::string ca_file;    // extra CAs for an https coordinator
  std::string api_token;  // for a coordinator started with --api-token
};

// One blocking exchange with the coordinator (a command line tool, not the server: blocking is
// fine here). Returns the status (0 on a transport error, with the error in `answer`).
int Exchange(const SagaFlags& f, const std::string& method, const std::string& path,
             const std::string& body, std::string& answer) {
  http::ClientRequest req;
  req.method = method;
  std::string base = f.server;
  while (!base.empty() && base.back() == '/') base.pop_back();
  req.url = base + path;
  req.body = body;
  req.timeout = std::chrono::seconds(f.timeout_s);
  req.headers.emplace_back("Content-Type", "application/json");
  if (!f.api_token.empty()) req.headers.emplace_back("Authorization", "Bearer " + f.api_token);
  auto r = SendBlocking(std::move(req), f.ca_file);
  if (!r.ok()) {
    answer = std::string("cannot reach ") + f.server + ": " + r.status().ToString();
    if (r.status().message().find("certificate verify failed") != std::string::npos) {
      answer += " (give the CA that signed the server's certificate with --ca-file)";
    }
    return 0;
  }
  answer = std::move(r->body);
  return r->status;
}

int Put(const SagaFlags& f) {
  std::ifstream in(f.file, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "dtx saga put: cannot read %s\n", f.file.c_str());
    return 1;
  }
  std::stringstream text;
  text << in.rdbuf();
  const std::string name = f.name.empty() ? std::filesystem::path(f.file).stem().string() : f.name;
  std::string answer;
  int status = Exchange(f, "PUT", "/api/dtx/sagas/" + http::UrlEncode(name), text.str(), answer);
  if (status != 200) {
    std::fprintf(stderr, "dtx saga put: %s%s\n",
                 status == 0 ? "" : ("HTTP " + std::to_string(status) + ": ").c_str(),
                 answer.c_str());
    return 1;
  }
  boost::system::error_code ec;
  auto v = boost::json::parse(answer, ec);
  if (ec || !v.is_object()) {
    std::printf("%s\n", answer.c_str());
    return 0;
  }
  const auto& o = v.get_object();
  std::printf("%s version %lld%s\n", name.c_str(),
              static_cast<long long>(o.at("version").to_number<int64_t>()),
              o.at("changed").as_bool() ? "" : " (unchanged)");
  return 0;
}

int List(const SagaFlags& f) {
  std::string position;
  std::printf("%-40s %8s  %s\n", "NAME", "VERSION", "UPDATED");
  for (int page = 0; page < 10'000; ++page) {
    std::string path = "/api/dtx/sagas?limit=1000";
    if (!position.empty()) path += "&position=" + position;
    std::string answer;
    int status = Exchange(f, "GET", path, {}, answer);
    if (status != 200) {
      std::fprintf(stderr, "dtx saga list: %s%s\n",
                   status == 0 ? "" : ("HTTP " + std::to_string(status) + ": ").c_str(),
                   answer.c_str());
      return 1;
    }
    auto v = boost::json::parse(answer);
    for (const auto& s : v.at("sagas").as_array()) {
      std::printf("%-40s %8lld  %s\n", std::string(s.at("name").as_string()).c_str(),
                  static_cast<long long>(s.at("version").to_number<int64_t>()),
                  std::string(s.at("update_time").as_string()).c_str());
    }
    position = std::string(v.at("next_position").as_string());
    if (position.empty()) break;
  }
  return 0;
}

}  // namespace

void AddSagaCommand(CLI::App& app) {
  auto flags = std::make_shared<SagaFlags>();
  CLI::App* saga = app.add_subcommand("saga", "saga definitions (docs/saga.md)");
  saga->require_subcommand(1);
  saga->add_option("--server", flags->server, "the coordinator's base URL")
      ->envname("DTX_SERVER")
      ->capture_default_str();
  saga->add_option("--timeout", flags->timeout_s, "seconds to wait for the coordinator")
      ->capture_default_str();
  saga->add_option("--ca-file", flags->ca_file,
                   "PEM file of CA certificates to trust for an https server, besides the "
                   "system's store")
      ->envname("DTX_CA_FILE");
  saga->add_option("--api-token", flags->api_token,
                   "the token of a coordinator started with --api-token (sent as "
                   "'Authorization: Bearer')")
      ->envname("DTX_CLIENT_API_TOKEN");
  CLI::App* put = saga->add_subcommand("put", "register a definition from a JSON file");
  put->add_option("FILE", flags->file, "the definition (JSON)")->required();
  put->add_option("--name", flags->name, "the saga's name (default: FILE without extension)");
  put->callback([flags] {
    if (int rc = Put(*flags); rc != 0) throw CLI::RuntimeError(rc);
  });
  CLI::App* list = saga->add_subcommand("list", "list the registered sagas and their versions");
  list->callback([flags] {
    if (int rc = List(*flags); rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace dtx::tools
