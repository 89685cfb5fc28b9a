#pragma once
// With DDPM_SHOW_ERRORS set in the environment, the bad-input tests print
// every error message they provoke (one per line, after "error: "), so the
// messages users get can be reviewed in one place:
//   DDPM_SHOW_ERRORS=1 ctest --test-dir build -L hardening -V | grep 'error: '
#include <cstdio>
#include <cstdlib>
#include <string>

namespace ddpm::test {
inline void show_error(const std::string& msg) {
  if (std::getenv("DDPM_SHOW_ERRORS")) std::printf("error: %s\n", msg.c_str());
}
}  // namespace ddpm::test
