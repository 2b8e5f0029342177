// Errors the user can fix (bad config, bad file, bad plugin). main() prints the message alone
// and exits non-zero; anything else is reported as an internal error.
#pragma once

#include <stdexcept>
#include <string>

namespace loom {

class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace loom
