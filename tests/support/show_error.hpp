#pragma once
// error_of: the bad-input tests' check of an error message.
// With DDPM_SHOW_ERRORS set in the environment, the bad-input tests print
// every error message they provoke (one per line, after "error: "), so the
// messages users get can be reviewed in one place:
//   DDPM_SHOW_ERRORS=1 ctest --test-dir build -L hardening -V | grep 'error: '
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "ddpm/core/error.hpp"

namespace ddpm::test {
inline void show_error(const std::string& msg) {
  if (std::getenv("DDPM_SHOW_ERRORS")) std::printf("error: %s\n", msg.c_str());
}

// Runs `f`, which must throw ddpm::Error; returns the message after checking
// it is one line and holds every fragment.
template <class F>
std::string error_of(F&& f, std::initializer_list<std::string> fragments) {
  std::string msg;
  try {
    f();
  } catch (const Error& e) {
    msg = e.what();
    show_error(msg);
  }
  INFO("message: " << msg);
  CHECK(!msg.empty());
  CHECK(msg.find('\n') == std::string::npos);
  for (const auto& fragment : fragments) {
    INFO("expected fragment: " << fragment);
    CHECK(msg.find(fragment) != std::string::npos);
  }
  return msg;
}
}  // namespace ddpm::test
