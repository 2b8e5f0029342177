// "did you mean" for misspelt config keys.
#pragma once

#include <string>
#include <vector>

namespace loom {

// The closest candidate within an edit distance of about a third of the key's length, or "".
std::string closest_key(const std::string& key, const std::vector<std::string>& candidates);

}  // namespace loom
