// The choreography example's `demo` and `timeline` subcommands: start a private broker, the four
// services and one `dtx relay` per service database as real processes, place orders that take the
// concluded and the out-of-stock path, print each order's timeline across the services by
// correlation id, and check every service's database. Not thread-safe; exit code 0 when every
// check passed.
#pragma once

#include <string>

namespace choreography {

struct DemoOptions {
  std::string broker = "redis";  // redis | nats: a private redis-server / nats-server -js
  std::string broker_url;        // use this running broker instead of starting one
  std::string dtx;               // the dtx binary (for `dtx relay`)
  std::string dir;               // databases and logs; default: a fresh /tmp directory
  bool keep = false;             // keep `dir` afterwards
};

int RunDemo(const DemoOptions& options);
// Prints the merged timelines of the service databases in `dir` (order.db, payment.db, ...).
int PrintTimelines(const std::string& dir);

}  // namespace choreography
