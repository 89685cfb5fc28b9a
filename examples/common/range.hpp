#pragma once
// Range checks for command-line values, shared by the examples and the
// benchmarks (which parse their arguments by hand, without cxxopts). A bad
// value throws ddpm::Error with one line that names the flag, the value and
// what was expected:
//   --steps: expected an integer in [1, 1000], got 0
//   --guidance: expected a finite number in [0, 100], got nan
//   --threads: expected an integer in [0, 1024], got 'two'
// The examples declare numeric options as strings and read them with
// examples::option_in (cli.hpp), so NaN and inf reach the check and a
// message for text that is no number names the flag too.
#include <charconv>
#include <concepts>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "ddpm/core/error.hpp"

namespace examples {

// Which ends of [lo, hi] are included: [lo, hi], (lo, hi] or [lo, hi).
enum class Ends { closed, open_low, open_high };

// The most threads any example accepts (0: all hardware threads).
inline constexpr int kMaxThreads = 1024;

// The shortest text that reads back as `v` ("0.1", "1e-09", "nan", "inf").
template <class T>
  requires std::integral<T> || std::floating_point<T>
std::string show(T v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

// "an integer in [1, 1000]" / "a finite number in (0, 1]".
template <class T>
std::string range_text(T lo, T hi, Ends ends) {
  return std::string(std::is_integral_v<T> ? "an integer in " : "a finite number in ") +
         (ends == Ends::open_low ? "(" : "[") + show(lo) + ", " + show(hi) + (ends == Ends::open_high ? ")" : "]");
}

// `value` when it is in the range (and finite), else throws naming `flag`.
template <class T>
  requires std::integral<T> || std::floating_point<T>
T check_in(std::string_view flag, T value, std::type_identity_t<T> lo, std::type_identity_t<T> hi,
           Ends ends = Ends::closed) {
  const bool ok = (ends == Ends::open_low ? value > lo : value >= lo) &&
                  (ends == Ends::open_high ? value < hi : value <= hi);  // false for NaN; +-inf fail the finite bounds
  ddpm::require(ok, flag, ": expected ", range_text<T>(lo, hi, ends), ", got ", show(value));
  return value;
}

// The whole of `text` as a T ("+" allowed in front; doubles also read "nan"
// and "inf", which check_in then rejects); nothing when it is not one
// (empty, other characters, out of T's range).
template <class T>
  requires std::integral<T> || std::floating_point<T>
std::optional<T> read_number(std::string_view text) {
  if (text.size() > 1 && text[0] == '+' && text[1] != '-') text.remove_prefix(1);
  T v{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

// The message for text that is not a number at all.
template <class T>
std::string not_a_number(std::string_view flag, std::string_view text, T lo, T hi, Ends ends) {
  return ddpm::detail::concat(flag, ": expected ", range_text<T>(lo, hi, ends), ", got '", text, "'");
}

// Parses `text` and checks its range, throwing ddpm::Error as check_in does.
template <class T>
  requires std::integral<T> || std::floating_point<T>
T parse_in(std::string_view flag, std::string_view text, std::type_identity_t<T> lo, std::type_identity_t<T> hi,
           Ends ends = Ends::closed) {
  const auto v = read_number<T>(text);
  if (!v) throw ddpm::Error(not_a_number<T>(flag, text, lo, hi, ends));
  return check_in<T>(flag, *v, lo, hi, ends);
}

// A comma-separated list of values, each checked as parse_in does.
template <class T>
std::vector<T> parse_list_in(std::string_view flag, std::string_view text, std::type_identity_t<T> lo,
                             std::type_identity_t<T> hi, Ends ends = Ends::closed) {
  std::vector<T> v;
  for (std::size_t pos = 0;;) {
    const auto comma = text.find(',', pos);
    const auto item = text.substr(pos, comma == std::string_view::npos ? comma : comma - pos);
    v.push_back(parse_in<T>(flag, item, lo, hi, ends));
    if (comma == std::string_view::npos) return v;
    pos = comma + 1;
  }
}

}  // namespace examples
