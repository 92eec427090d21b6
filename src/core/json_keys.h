// One rule for matching JSON object keys to field names, the rule of Go's encoding/json that DTM
// applies to every body and to custom_data (json.Unmarshal into a struct):
//  - a key selects the field whose name equals it exactly, else the field it equals under Unicode
//    simple case folding (for our lowercase ASCII names: ASCII case, plus U+017F 'ſ' for 's' and
//    U+212A KELVIN SIGN for 'k');
//  - keys are applied in document order, so of several keys that select one field (exact or not)
//    the LAST wins; a null value is a no-op (it leaves the field as it was).
// E.g. {"Delay":5,"delay":0} reads delay = 0, {"delay":5,"Delay":null} reads delay = 5.
//
// Used by the API's request decoding and by every reader of custom_data (saga concurrent/orders,
// msg delay, business_keys). Pure functions; thread-safe.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <functional>
#include <span>
#include <string_view>

namespace dtx::core {

// True if `key` equals `lower_name` (lowercase ASCII letters, digits and '_') under Go's folding.
bool GoFoldEquals(std::string_view key, std::string_view lower_name);

// Index of the name `key` selects in `names` (an exact match first, then a folded one); -1 if none.
int MatchGoKey(std::string_view key, std::span<const std::string_view> names);

// The value that decides field `lower_name` of `obj`: the last non-null value of a key that
// selects it; nullptr if none does.
const boost::json::value* GoField(const boost::json::object& obj, std::string_view lower_name);

// Calls `fn` with every non-null value of a key that selects `lower_name`, in document order (for
// a map field, whose entries Go merges across repeated keys).
void ForEachGoField(const boost::json::object& obj, std::string_view lower_name,
                    const std::function<void(const boost::json::value&)>& fn);

}  // namespace dtx::core
