#pragma once
// ddpm::Error: the one exception type the library throws for bad input.
// Messages name the parameter (or file and field) and what was expected.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace ddpm {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream os;
  os.precision(17);
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}
}  // namespace detail

// Throws ddpm::Error with the message formed by streaming `parts` when `ok` is false.
// The parts are only formatted on failure, so checks in hot paths cost a branch.
template <class... Parts>
inline void require(bool ok, Parts&&... parts) {
  if (!ok) [[unlikely]]
    throw Error(detail::concat(std::forward<Parts>(parts)...));
}

template <class... Parts>
[[noreturn]] inline void fail(Parts&&... parts) {
  throw Error(detail::concat(std::forward<Parts>(parts)...));
}

}  // namespace ddpm
