// Test broker processes: see broker_process.h.
#include "brokers/broker_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <thread>

namespace dtx::brokers::testing {
namespace {

constexpr const char* kRabbitmqServer = "/usr/lib/rabbitmq/bin/rabbitmq-server";

// Redis answers PING with +PONG only once its data set is loaded (-LOADING before); nats-server
// greets a client with INFO once it listens (JetStream is enabled before the listener);
// RabbitMQ answers the AMQP protocol header with connection.start (a method frame, type 1) once it
// booted (its listeners start last).
bool Ready(const std::string& kind, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (ok) {
    char buf[64] = {};
    if (kind == "nats") {
      ok = ::read(fd, buf, sizeof buf - 1) > 0 && std::string_view(buf).starts_with("INFO");
    } else if (kind == "amqp") {
      ok = ::write(fd, "AMQP\0\0\x09\x01", 8) == 8 && ::read(fd, buf, sizeof buf - 1) > 0 &&
           buf[0] == 1;
    } else {
      ok = ::write(fd, "PING\r\n", 6) == 6 && ::read(fd, buf, sizeof buf - 1) > 0 &&
           std::string_view(buf).starts_with("+PONG");
    }
  }
  ::close(fd);
  return ok;
}

bool WaitExit(int pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

BrokerProcess::BrokerProcess(std::string kind, std::string dir)
    : kind_(std::move(kind)), dir_(std::move(dir)) {
  std::filesystem::create_directories(dir_);
}

BrokerProcess::~BrokerProcess() { Kill(); }

std::vector<std::string> BrokerProcess::Argv() const {
#ifdef DTX_KAFKA_MOCK_PATH
  if (kind_ == "kafka") return {DTX_KAFKA_MOCK_PATH};
#endif
  if (kind_ == "amqp") return {kRabbitmqServer};  // configured by Env()
  if (kind_ == "nats") {                          // JetStream with file storage under dir_
    return {"/usr/sbin/nats-server", "-js", "-a", "127.0.0.1", "-p", std::to_string(port_), "-sd",
            dir_ + "/jetstream"};
  }
  // appendonly + appendfsync always: an acknowledged XADD survives a kill -9 of the server.
  return {"/usr/bin/redis-server",
          "--port",
          std::to_string(port_),
          "--bind",
          "127.0.0.1",
          "--dir",
          dir_,
          "--save",
          "",
          "--appendonly",
          "yes",
          "--appendfsync",
          "always",
          "--daemonize",
          "no"};
}

// rabbitmq-server: its own node name, ports, data and log under dir_ (nothing of /etc/rabbitmq or
// /var/lib/rabbitmq; HOME holds the node's Erlang cookie). epmd, which Erlang starts on demand, is
// shared by the nodes of the machine and outlives them.
std::vector<std::string> BrokerProcess::Env() const {
  if (kind_ != "amqp") return {};
  return {"HOME=" + dir_,
          "RABBITMQ_CONF_ENV_FILE=/dev/null",
          "RABBITMQ_NODENAME=dtx-test-" + std::to_string(port_) + "@localhost",
          "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
          "RABBITMQ_NODE_PORT=" + std::to_string(port_),
          "RABBITMQ_DIST_PORT=" + std::to_string(dist_port_),
          "RABBITMQ_MNESIA_BASE=" + dir_ + "/mnesia",
          "RABBITMQ_LOG_BASE=" + dir_ + "/log",
          "RABBITMQ_LOGS=-",
          "RABBITMQ_ENABLED_PLUGINS_FILE=" + dir_ + "/enabled_plugins",
          "RABBITMQ_CONFIG_FILE=" + dir_ + "/rabbitmq",
          "RABBITMQ_ADVANCED_CONFIG_FILE=" + dir_ + "/advanced.config",
          "RABBITMQ_PID_FILE=" + dir_ + "/rabbitmq.pid"};
}

bool BrokerAvailable(const std::string& kind) {
  if (kind == "amqp") return ::access(kRabbitmqServer, X_OK) == 0;
  if (kind == "nats") return ::access("/usr/sbin/nats-server", X_OK) == 0;
  if (kind == "redis") return ::access("/usr/bin/redis-server", X_OK) == 0;
  return true;  // kafka: dtx-kafka-mock is built here
}

std::string BrokerProcess::Url() const {
  if (kind_ == "kafka") return "kafka://" + bootstrap_;
  return kind_ + "://127.0.0.1:" + std::to_string(port_);
}

namespace {
// The bootstrap list dtx-kafka-mock printed into its log, or "".
std::string KafkaBootstrap(const std::string& log) {
  std::ifstream in(log);
  const std::string prefix = "dtx-kafka-mock ready: bootstrap ";
  std::string line, found;
  while (std::getline(in, line)) {
    if (line.starts_with(prefix)) found = line.substr(prefix.size());
  }
  return found;
}
}  // namespace

bool BrokerProcess::Start(std::chrono::milliseconds timeout) {
  if (pid_ > 0) return true;
  if (port_ == 0) port_ = FreePort();
  if (dist_port_ == 0) dist_port_ = FreePort();
  if (kind_ == "amqp")
    timeout = std::max<std::chrono::milliseconds>(timeout, std::chrono::seconds(90));
  std::vector<std::string> args = Argv();
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = Env();
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
  for (std::string& e : env_strings) env.push_back(e.data());
  env.push_back(nullptr);
  const std::string log = log_path();
  if (kind_ == "kafka") std::filesystem::remove(log);  // a restart prints a new address
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);  // its own process group: Kill and Stop reach the server's children too
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execve(argv[0], argv.data(), env.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here: no race with Kill right after the fork
  pid_ = pid;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (kind_ == "kafka") {
      bootstrap_ = KafkaBootstrap(log);
      if (!bootstrap_.empty()) return true;
    } else if (Ready(kind_, port_)) {
      return true;
    }
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Kill();
  return false;
}

void BrokerProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGKILL);
  WaitExit(pid_, std::chrono::seconds(10));
  pid_ = -1;
}

bool BrokerProcess::SetDown(bool down) {
  if (kind_ != "kafka" || pid_ <= 0) return false;
  return ::kill(pid_, down ? SIGUSR1 : SIGUSR2) == 0;
}

void BrokerProcess::Stop() {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGTERM);
  if (!WaitExit(pid_, std::chrono::seconds(kind_ == "amqp" ? 30 : 10))) {
    ::kill(-pid_, SIGKILL);
    WaitExit(pid_, std::chrono::seconds(10));
  }
  pid_ = -1;
}

}  // namespace dtx::brokers::testing
