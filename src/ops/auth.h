// Admin API tokens (issue 13): named bearer tokens. The name is the "who" of the audit log.
//
// Configured with `dtx server --admin-token NAME=TOKEN` (repeatable), the environment variable
// DTX_ADMIN_TOKEN (NAME=TOKEN[,NAME=TOKEN...]) or `--admin-token-file PATH` (one NAME=TOKEN per
// line, '#' comments). Tokens are never logged; only their names are.
//
// Thread-safety: fill it before the server starts; Authenticate is const and may then be called
// from every thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace dtx::ops {

inline constexpr size_t kMinAdminTokenBytes = 16;   // shorter tokens are refused at start
inline constexpr size_t kMaxAdminTokenBytes = 256;  // and longer ones too (a typo, a key file)
inline constexpr size_t kMaxAdminTokens = 64;

class TokenSet {
 public:
  // "NAME=TOKEN": NAME is 1-64 of [A-Za-z0-9_.@-], TOKEN 16-256 printable ASCII bytes without
  // spaces. kInvalidArgument (naming the entry by its NAME only) otherwise, or for a NAME given
  // twice, or beyond kMaxAdminTokens.
  Status Add(std::string_view spec);
  // Comma-separated entries (the DTX_ADMIN_TOKEN form).
  Status AddList(std::string_view specs);
  // One entry per line; blank lines and lines starting with '#' are skipped. An unreadable file is
  // kInvalidArgument with the reason (the server refuses to start).
  Status AddFile(const std::string& path);

  bool empty() const { return tokens_.empty(); }
  size_t size() const { return tokens_.size(); }

  // The name of the token in an "Authorization: Bearer TOKEN" header value, or nullopt (absent,
  // not Bearer, unknown). Every configured token is compared, each in time that depends only on
  // the lengths, so the answer's timing does not tell where a guess went wrong.
  std::optional<std::string> Authenticate(std::string_view authorization) const;

 private:
  struct Entry {
    std::string name;
    std::string token;
  };
  std::vector<Entry> tokens_;
};

// Compares two byte strings in time that depends only on their lengths.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace dtx::ops
