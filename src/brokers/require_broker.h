// DTX_REQUIRE_BROKER(kind) at the top of a gtest body: skips the test when the broker's server
// binary is not installed on a developer's box, and fails it under CI (CI=true), where
// scripts/install-deps.sh installs every broker, so that a missing install step is not hidden.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>

#include "brokers/broker_process.h"

#define DTX_REQUIRE_BROKER(kind)                                                           \
  do {                                                                                     \
    if (!::dtx::brokers::testing::BrokerAvailable(kind)) {                                 \
      ASSERT_EQ(std::getenv("CI"), nullptr)                                                \
          << "the " << (kind) << " broker is not installed (run scripts/install-deps.sh)"; \
      GTEST_SKIP() << "the " << (kind) << " broker is not installed";                      \
    }                                                                                      \
  } while (0)
