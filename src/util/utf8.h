// UTF-8 validity (RFC 3629: no overlong forms, no surrogates U+D800-U+DFFF, nothing above
// U+10FFFF). Used to refuse input that would be stored as text which JSON cannot carry (a query
// parameter, a path segment) and to repair text that reaches an encoder unvalidated. Pure;
// thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dtx {

// Length of the well-formed UTF-8 sequence starting at s[i]; 0 if the bytes there are not one.
size_t Utf8SequenceLength(std::string_view s, size_t i);
// Offset of the first byte that does not start a well-formed sequence; npos if `s` is valid.
size_t FirstInvalidUtf8(std::string_view s);
inline bool IsValidUtf8(std::string_view s) {
  return FirstInvalidUtf8(s) == std::string_view::npos;
}
// `s` with each byte of an ill-formed sequence replaced by U+FFFD (what Go's json.Marshal does).
std::string RepairUtf8(std::string_view s);

}  // namespace dtx
