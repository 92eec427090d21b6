// Open* (the scheme decides the adapter) and URL parsing for src/brokers/broker.h.
#include "brokers/broker.h"

#include <charconv>

#include "brokers/amqp.h"
#include "brokers/dtx_sink.h"
#include "brokers/kafka.h"
#include "brokers/nats.h"
#include "brokers/redis.h"

namespace dtx::brokers {

Result<HostPort> ParseHostPort(std::string_view url, std::string_view scheme, int default_port) {
  const std::string prefix = std::string(scheme) + "://";
  if (!url.starts_with(prefix)) {
    return Status::InvalidArgument("broker URL '" + std::string(url) + "' does not start with " +
                                   prefix);
  }
  std::string_view rest = url.substr(prefix.size());
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) rest = rest.substr(0, slash);
  HostPort hp;
  hp.port = default_port;
  size_t colon = rest.rfind(':');
  hp.host = std::string(rest.substr(0, colon));
  if (colon != std::string_view::npos) {
    std::string_view p = rest.substr(colon + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), hp.port);
    if (ec != std::errc() || end != p.data() + p.size() || hp.port <= 0 || hp.port > 65535) {
      return Status::InvalidArgument("broker URL '" + std::string(url) + "': bad port");
    }
  }
  if (hp.host.empty()) {
    return Status::InvalidArgument("broker URL '" + std::string(url) + "': no host");
  }
  return hp;
}

namespace {
constexpr const char* kKnownSchemes =
    "redis:// (Redis Streams), nats:// (NATS JetStream), kafka:// (Kafka), amqp:// (RabbitMQ), "
    "dtx:// or dtxs:// (a dtx coordinator's topics over HTTP or HTTPS; sink only)";

std::string_view SchemeOf(std::string_view url) {
  size_t p = url.find("://");
  return p == std::string_view::npos ? std::string_view() : url.substr(0, p);
}
}  // namespace

Result<std::unique_ptr<Publisher>> OpenPublisher(std::string_view url,
                                                 const PublisherOptions& options) {
  std::string_view scheme = SchemeOf(url);
  if (scheme == "dtx" || scheme == "dtxs") return OpenDtxPublisher(url, options);
  if (!options.token.empty() || !options.ca_file.empty()) {
    return Status::InvalidArgument(
        "a sink token or CA file is for a dtx:// or dtxs:// sink, not '" + std::string(url) + "'");
  }
  if (scheme == "redis") return OpenRedisPublisher(url);
  if (scheme == "nats") return OpenNatsPublisher(url);
  if (scheme == "kafka") return OpenKafkaPublisher(url);
  if (scheme == "amqp") return OpenAmqpPublisher(url);
  return Status::InvalidArgument("unknown sink scheme in '" + std::string(url) +
                                 "'; this build knows " + kKnownSchemes);
}

Result<std::unique_ptr<Consumer>> OpenConsumer(std::string_view url, ConsumerOptions options) {
  if (options.topics.empty() || options.topics.size() > 16 || options.group.empty() ||
      options.consumer.empty()) {
    return Status::InvalidArgument("consumer: needs a group, a consumer name and 1..16 topics");
  }
  std::string_view scheme = SchemeOf(url);
  if (scheme == "redis") return OpenRedisConsumer(url, std::move(options));
  if (scheme == "nats") return OpenNatsConsumer(url, std::move(options));
  if (scheme == "kafka") return OpenKafkaConsumer(url, std::move(options));
  if (scheme == "amqp") return OpenAmqpConsumer(url, std::move(options));
  if (scheme == "dtx" || scheme == "dtxs") {
    return Status::InvalidArgument(
        "dtx:// is a relay sink only: a coordinator's subscribers "
        "receive its HTTP calls (GET /api/dtmsvr/subscribe)");
  }
  return Status::InvalidArgument("unknown broker scheme in '" + std::string(url) +
                                 "'; this build knows " + kKnownSchemes);
}

}  // namespace dtx::brokers
