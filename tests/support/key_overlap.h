// Business keys in end-to-end tests: the span of each transaction at the participant (from its
// first call's start to its last call's end, by the `gid` query parameter) and the check that no
// two transactions sharing a key overlapped there.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "tests/support/harness.h"

namespace dtx::testing {

struct KeySpan {
  std::chrono::steady_clock::time_point first;
  std::chrono::steady_clock::time_point last;
  size_t calls = 0;
};

inline std::map<std::string, KeySpan> Spans(const Busi& busi) {
  std::map<std::string, KeySpan> out;
  for (const BusiCall& c : busi.Calls()) {
    auto it = c.query.find("gid");
    if (it == c.query.end()) continue;
    KeySpan& s = out[it->second];
    if (s.calls == 0 || c.start < s.first) s.first = c.start;
    if (s.calls == 0 || c.end > s.last) s.last = c.end;
    s.calls += 1;
  }
  return out;
}

// Asserts that no two transactions sharing a key (gid -> its keys) overlap at the participant;
// returns how many such pairs were checked.
inline size_t ExpectNoOverlap(const Busi& busi,
                              const std::map<std::string, std::vector<std::string>>& keys) {
  const std::map<std::string, KeySpan> spans = Spans(busi);
  size_t pairs = 0;
  for (auto a = keys.begin(); a != keys.end(); ++a) {
    for (auto b = std::next(a); b != keys.end(); ++b) {
      bool shared = false;
      for (const std::string& k : a->second) {
        shared = shared || std::find(b->second.begin(), b->second.end(), k) != b->second.end();
      }
      auto sa = spans.find(a->first);
      auto sb = spans.find(b->first);
      if (!shared || sa == spans.end() || sb == spans.end()) continue;
      ++pairs;
      const bool disjoint =
          sa->second.last <= sb->second.first || sb->second.last <= sa->second.first;
      EXPECT_TRUE(disjoint) << a->first << " and " << b->first << " share a key and overlapped";
    }
  }
  return pairs;
}

inline boost::json::array Keys(const std::vector<std::string>& keys) {
  boost::json::array a;
  for (const auto& k : keys) a.emplace_back(k);
  return a;
}

}  // namespace dtx::testing
