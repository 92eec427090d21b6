#include "core/json_keys.h"

namespace dtx::core {

bool GoFoldEquals(std::string_view key, std::string_view lower_name) {
  size_t i = 0;
  for (char c : lower_name) {
    if (i >= key.size()) return false;
    auto k = static_cast<unsigned char>(key[i]);
    if (k < 0x80) {
      if (k >= 'A' && k <= 'Z') k = static_cast<unsigned char>(k - 'A' + 'a');
      if (k != static_cast<unsigned char>(c)) return false;
      ++i;
    } else if (c == 's' && key.substr(i, 2) == "\xC5\xBF") {
      i += 2;  // U+017F LATIN SMALL LETTER LONG S
    } else if (c == 'k' && key.substr(i, 3) == "\xE2\x84\xAA") {
      i += 3;  // U+212A KELVIN SIGN
    } else {
      return false;
    }
  }
  return i == key.size();
}

int MatchGoKey(std::string_view key, std::span<const std::string_view> names) {
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == key) return static_cast<int>(i);
  }
  for (size_t i = 0; i < names.size(); ++i) {
    if (GoFoldEquals(key, names[i])) return static_cast<int>(i);
  }
  return -1;
}

namespace {

// Whether `key` selects `lower_name` among the fields of a struct that has no other field it could
// select: for one field, an exact match and a folded one both select it.
bool Selects(std::string_view key, std::string_view lower_name) {
  return key == lower_name || GoFoldEquals(key, lower_name);
}

}  // namespace

const boost::json::value* GoField(const boost::json::object& obj, std::string_view lower_name) {
  const boost::json::value* found = nullptr;
  for (const auto& kv : obj) {
    if (!kv.value().is_null() && Selects(kv.key(), lower_name)) found = &kv.value();
  }
  return found;
}

void ForEachGoField(const boost::json::object& obj, std::string_view lower_name,
                    const std::function<void(const boost::json::value&)>& fn) {
  for (const auto& kv : obj) {
    if (!kv.value().is_null() && Selects(kv.key(), lower_name)) fn(kv.value());
  }
}

}  // namespace dtx::core
