// The random source: Philox known answers (Random123's kat_vectors), the
// statistics of its uniforms and normals, and exact state round trips.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "ddpm/core/random.hpp"

using ddpm::Rng;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors", "[random]") {
  using A4 = std::array<std::uint32_t, 4>;
  CHECK(ddpm::philox4x32_10({0, 0, 0, 0}, {0, 0}) == A4{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(ddpm::philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        A4{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(ddpm::philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        A4{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("uniforms and normals have the right moments", "[random]") {
  Rng rng(1234);
  const int n = 200000;
  double s = 0, s2 = 0, s3 = 0, s4 = 0, u = 0, umin = 1, umax = 0;
  for (int i = 0; i < n; ++i) {
    const double z = rng.normal();
    s += z, s2 += z * z, s3 += z * z * z, s4 += z * z * z * z;
    const double v = rng.uniform();
    u += v, umin = std::min(umin, v), umax = std::max(umax, v);
  }
  // Standard errors: mean 1/sqrt(n) = 0.0022, var sqrt(2/n) = 0.0032; 5 sigma bounds.
  CHECK(std::abs(s / n) < 0.011);
  CHECK(std::abs(s2 / n - 1) < 0.016);
  CHECK(std::abs(s3 / n) < 0.03);
  CHECK(std::abs(s4 / n - 3) < 0.06);
  CHECK(std::abs(u / n - 0.5) < 0.004);
  CHECK(umin >= 0.0);
  CHECK(umax < 1.0);
}

TEST_CASE("uniform_int covers its range evenly", "[random]") {
  Rng rng(7);
  std::vector<int> hist(10);
  for (int i = 0; i < 100000; ++i) ++hist[rng.uniform_int(10)];
  for (int h : hist) CHECK(std::abs(h - 10000) < 500);  // 5 sigma
  CHECK_THROWS_AS(rng.uniform_int(0), ddpm::Error);
}

TEST_CASE("the same seed gives the same stream; state round-trips exactly", "[random]") {
  Rng a(99), b(99);
  for (int i = 0; i < 5; ++i) a.normal(), b.normal();
  const auto saved = a.state();
  std::vector<double> first;
  for (int i = 0; i < 7; ++i) first.push_back(a.normal());
  Rng c(saved);
  for (int i = 0; i < 7; ++i) CHECK(c.normal() == first[i]);
  for (int i = 0; i < 7; ++i) CHECK(b.normal() == first[i]);
}

TEST_CASE("streams and seeds are independent", "[random]") {
  Rng a(5), b = a.fork(1), c(6);
  const double x = a.normal(), y = b.normal(), z = c.normal();
  CHECK(x != y);
  CHECK(x != z);
  // Correlation of two forked streams is ~0.
  double sxy = 0;
  for (int i = 0; i < 50000; ++i) sxy += a.normal() * b.normal();
  CHECK(std::abs(sxy / 50000) < 0.025);
}

TEST_CASE("regression fixture: the first normals of seed 0 never change", "[random]") {
  // Values produced by this generator when it was written; they pin the
  // stream so that saved seeds keep giving the same samples across releases.
  Rng rng(0);
  const double z0 = rng.normal(), z1 = rng.normal();
  // Recompute independently from the Philox block and Box-Muller.
  const auto b = ddpm::philox4x32_10({0, 0, 0, 0}, {0, 0});
  const double u1 = (static_cast<double>(((std::uint64_t{b[1]} << 32) | b[0]) >> 11) + 1.0) * 0x1.0p-53;
  const double u2 = static_cast<double>(((std::uint64_t{b[3]} << 32) | b[2]) >> 11) * 0x1.0p-53;
  CHECK(z0 == std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2));
  CHECK(z1 == std::sqrt(-2 * std::log(u1)) * std::sin(2 * M_PI * u2));
}
