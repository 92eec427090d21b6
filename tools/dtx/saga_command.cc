#include "tools/dtx/saga_command.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "http/client.h"
#include "http/server.h"

namespace dtx::tools {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;

struct SagaFlags {
  std::string server = "http://127.0.0.1:36789";
  std::string file;
  std::string name;  // default: the file name without its extension
  int timeout_s = 10;
};

// One blocking exchange with the coordinator (a command line tool, not the server: blocking is
// fine here). Returns the status (0 on a transport error, with the error in `body`).
int Exchange(const SagaFlags& f, bhttp::verb method, const std::string& path,
             const std::string& body, std::string& answer) {
  auto url = http::ParseHttpUrl(f.server + path);
  if (!url.ok()) {
    answer = "--server: " + url.status().message();
    return 0;
  }
  try {
    asio::io_context ioc;
    beast::tcp_stream stream(ioc);
    asio::ip::tcp::resolver resolver(ioc);
    stream.expires_after(std::chrono::seconds(f.timeout_s));
    stream.connect(resolver.resolve(url->host, std::to_string(url->port)));
    bhttp::request<bhttp::string_body> req{method, url->target, 11};
    req.set(bhttp::field::host, url->host);
    req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    bhttp::write(stream, req);
    beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(stream, buffer, res);
    answer = res.body();
    beast::error_code ec;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    return static_cast<int>(res.result_int());
  } catch (const std::exception& e) {
    answer = std::string("cannot reach ") + f.server + ": " + e.what();
    return 0;
  }
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
  int status =
      Exchange(f, bhttp::verb::put, "/api/dtx/sagas/" + http::UrlEncode(name), text.str(), answer);
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
    int status = Exchange(f, bhttp::verb::get, path, {}, answer);
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
