// dtx-kafka-mock: a Kafka cluster for tests, from librdkafka's built-in mock cluster
// (rd_kafka_mock_cluster_new), because Debian has no Kafka broker. It speaks the real Kafka
// protocol over TCP on 127.0.0.1, keeps everything in memory (a restart loses the data), prints
// "dtx-kafka-mock ready: bootstrap HOST:PORT[,HOST:PORT...]" once it listens, and runs until
// SIGTERM/SIGINT. SIGUSR1 takes every broker down (connections refused and dropped, the data
// stays), SIGUSR2 brings them back: an outage without losing the in-memory data, which a restart
// would.   dtx-kafka-mock [--brokers N]
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  int brokers = 1;
  if (argc == 3 && std::strcmp(argv[1], "--brokers") == 0) brokers = std::atoi(argv[2]);
  if (brokers < 1 || brokers > 5) {
    std::fprintf(stderr, "usage: dtx-kafka-mock [--brokers 1..5]\n");
    return 2;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  sigaddset(&signals, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before librdkafka starts its threads
  char err[512] = {};
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);  // the host client has no brokers
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) {
    std::fprintf(stderr, "dtx-kafka-mock: %s\n", err);
    return 1;
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk, brokers);
  if (cluster == nullptr) {
    std::fprintf(stderr, "dtx-kafka-mock: could not create the mock cluster\n");
    return 1;
  }
  std::printf("dtx-kafka-mock ready: bootstrap %s\n", rd_kafka_mock_cluster_bootstraps(cluster));
  std::fflush(stdout);
  for (int sig = 0; sigwait(&signals, &sig) == 0 && sig != SIGTERM && sig != SIGINT;) {
    for (int32_t id = 1; id <= brokers; ++id) {
      if (sig == SIGUSR1) rd_kafka_mock_broker_set_down(cluster, id);
      if (sig == SIGUSR2) rd_kafka_mock_broker_set_up(cluster, id);
    }
    std::printf("dtx-kafka-mock: brokers %s\n", sig == SIGUSR1 ? "down" : "up");
    std::fflush(stdout);
  }
  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(rk);
  return 0;
}
