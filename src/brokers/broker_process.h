// Real broker servers for tests: starts redis-server, nats-server -js or rabbitmq-server (Debian
// packages) privately
// on 127.0.0.1 on a free port with its data in a temporary directory, and stops, kills (-9) or
// restarts it. Every wait is bounded. Not thread-safe; one object per server.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace dtx::brokers::testing {

// A free TCP port on 127.0.0.1 (bound and released; a race with other processes is possible but
// rare, and Start fails visibly then).
int FreePort();

// Whether the broker's server binary is installed ("redis", "nats", "amqp"; "kafka": always). A
// test skips without it on a developer's box; CI installs every broker (scripts/install-deps.sh).
bool BrokerAvailable(const std::string& kind);

class BrokerProcess {
 public:
  // kind: "redis", "nats", "amqp" (rabbitmq-server, ~5-10 s to boot) or "kafka" (dtx-kafka-mock:
  // in memory, a new port and no data after a restart). `dir` holds data and log (created).
  BrokerProcess(std::string kind, std::string dir);
  ~BrokerProcess();  // SIGKILL if running
  BrokerProcess(const BrokerProcess&) = delete;
  BrokerProcess& operator=(const BrokerProcess&) = delete;

  // Starts (on the same port after the first start) and waits until it accepts connections.
  bool Start(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  void Kill();  // SIGKILL and reap
  void Stop();  // SIGTERM and reap (bounded; SIGKILL after 10 s)
  // kafka only (the mock loses its data on a restart): every broker down (refusing and dropping
  // connections) or up again, data kept. False for other kinds.
  bool SetDown(bool down);
  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string Url()
      const;  // redis://127.0.0.1:PORT, nats://..., amqp://..., kafka://HOST:PORT[,...]
  std::string log_path() const { return dir_ + "/server.log"; }

 private:
  std::vector<std::string> Argv() const;
  std::vector<std::string> Env() const;  // added to the server's environment

  std::string kind_;
  std::string dir_;
  int port_ = 0;
  int dist_port_ = 0;  // amqp: the Erlang distribution port
  int pid_ = -1;
  std::string bootstrap_;  // kafka: what dtx-kafka-mock printed
};

}  // namespace dtx::brokers::testing
