#pragma once
// A reproducible random source: the same seed gives the same numbers with any
// compiler, standard library and platform.
//
// Bits come from Philox4x32-10 (Salmon et al., "Parallel random numbers: as
// easy as 1, 2, 3", SC'11), a counter-based generator: block k of stream s
// under seed `seed` is a pure function of (seed, s, k). That makes the state
// tiny (saved in training checkpoints) and gives independent streams for
// data-parallel ranks and worker threads without any coordination.
//
// Normals use the Box-Muller transform on 53-bit uniforms, evaluated in
// double with only std::log, std::sqrt, std::sin and std::cos, never
// std::normal_distribution (whose algorithm differs between libraries).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>

#include "ddpm/core/error.hpp"

namespace ddpm {

// The raw Philox4x32-10 bijection: 128-bit counter + 64-bit key -> 128 bits.
inline std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> ctr,
                                                  std::array<std::uint32_t, 2> key) {
  constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = std::uint64_t{kMul0} * ctr[0];
    const std::uint64_t p1 = std::uint64_t{kMul1} * ctr[2];
    ctr = {static_cast<std::uint32_t>(p1 >> 32) ^ ctr[1] ^ key[0], static_cast<std::uint32_t>(p1),
           static_cast<std::uint32_t>(p0 >> 32) ^ ctr[3] ^ key[1], static_cast<std::uint32_t>(p0)};
    key[0] += kWeyl0;
    key[1] += kWeyl1;
  }
  return ctr;
}

class Rng {
 public:
  // Everything needed to continue the stream exactly where it was.
  struct State {
    std::uint64_t seed = 0;
    std::uint64_t stream = 0;
    std::uint64_t counter = 0;  // next Philox block
    bool has_spare = false;     // Box-Muller's second normal, kept for the next call
    double spare = 0.0;
    friend bool operator==(const State&, const State&) = default;
  };

  explicit Rng(std::uint64_t seed = 0, std::uint64_t stream = 0) { state_.seed = seed, state_.stream = stream; }
  explicit Rng(const State& s) : state_(s) {}

  const State& state() const { return state_; }
  void set_state(const State& s) { state_ = s; }

  // An independent stream under the same seed (e.g. one per MPI rank).
  Rng fork(std::uint64_t stream) const { return Rng(state_.seed, stream); }

  // The next 128-bit block; advances the counter by one.
  std::array<std::uint32_t, 4> next_block() {
    const std::uint64_t c = state_.counter++;
    return philox4x32_10({static_cast<std::uint32_t>(c), static_cast<std::uint32_t>(c >> 32),
                          static_cast<std::uint32_t>(state_.stream), static_cast<std::uint32_t>(state_.stream >> 32)},
                         {static_cast<std::uint32_t>(state_.seed), static_cast<std::uint32_t>(state_.seed >> 32)});
  }

  std::uint64_t next_u64() {
    const auto b = next_block();
    return (std::uint64_t{b[1]} << 32) | b[0];
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

  // Uniform integer in [0, n), without modulo bias (Lemire's method with rejection).
  std::uint64_t uniform_int(std::uint64_t n) {
    require(n > 0, "Rng::uniform_int: n must be > 0");
    for (;;) {
      const std::uint64_t x = next_u64();
      std::uint64_t high;
      const std::uint64_t low = mul_64x64(x, n, high);
      if (low >= n || low >= (0 - n) % n) return high;
    }
  }

  // Standard normal N(0, 1). One Philox block yields two uniforms and so two normals.
  double normal() {
    if (state_.has_spare) {
      state_.has_spare = false;
      return state_.spare;
    }
    double cos_part, sin_part;
    box_muller_pairs<1>(1, &cos_part, &sin_part);
    state_.spare = sin_part;
    state_.has_spare = true;
    return cos_part;
  }

  // The same values as `mean + stddev * normal()` called out.size() times, in
  // that order, and the same state afterwards; computed a chunk of Philox
  // blocks at a time (the counter makes block k independent of block k - 1),
  // which lets the compiler vectorise the bit generation.
  template <class T>
  void fill_normal(std::span<T> out, double mean = 0.0, double stddev = 1.0) {
    std::size_t i = 0;
    if (state_.has_spare && !out.empty()) out[i++] = static_cast<T>(mean + stddev * normal());
    constexpr std::size_t kChunk = 64;
    std::array<double, kChunk> cos_part, sin_part;
    while (out.size() - i >= 2) {
      const std::size_t pairs = std::min(kChunk, (out.size() - i) / 2);
      box_muller_pairs<kChunk>(pairs, cos_part.data(), sin_part.data());
      for (std::size_t p = 0; p < pairs; ++p, i += 2) {
        out[i] = static_cast<T>(mean + stddev * cos_part[p]);
        out[i + 1] = static_cast<T>(mean + stddev * sin_part[p]);
      }
    }
    if (i < out.size()) out[i] = static_cast<T>(mean + stddev * normal());
  }
  template <class T>
  void fill_uniform(std::span<T> out, double lo = 0.0, double hi = 1.0) {
    for (auto& x : out) x = static_cast<T>(uniform(lo, hi));
  }

 private:
  // Full 128-bit product of two 64-bit values, portably (no __int128).
  static std::uint64_t mul_64x64(std::uint64_t a, std::uint64_t b, std::uint64_t& high) {
    const std::uint64_t a_lo = a & 0xFFFFFFFFu, a_hi = a >> 32, b_lo = b & 0xFFFFFFFFu, b_hi = b >> 32;
    const std::uint64_t ll = a_lo * b_lo, lh = a_lo * b_hi, hl = a_hi * b_lo, hh = a_hi * b_hi;
    const std::uint64_t mid = (ll >> 32) + (lh & 0xFFFFFFFFu) + (hl & 0xFFFFFFFFu);
    high = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return (mid << 32) | (ll & 0xFFFFFFFFu);
  }

  // Box-Muller on the next n Philox blocks (n <= kLanes): block k's two 53-bit
  // uniforms u1 in (0, 1], u2 in [0, 1) give r cos(2 pi u2) and r sin(2 pi u2),
  // r = sqrt(-2 ln u1). Advances the counter by n. Philox runs on all kLanes
  // lanes (a fixed trip count the compiler vectorises); the extra lanes are
  // discarded.
  template <std::size_t kLanes>
  void box_muller_pairs(std::size_t n, double* cos_part, double* sin_part) {
    constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
    constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
    std::array<std::uint32_t, kLanes> c0, c1, c2, c3;
    for (std::size_t k = 0; k < kLanes; ++k) {
      const std::uint64_t c = state_.counter + k;
      c0[k] = static_cast<std::uint32_t>(c), c1[k] = static_cast<std::uint32_t>(c >> 32);
      c2[k] = static_cast<std::uint32_t>(state_.stream), c3[k] = static_cast<std::uint32_t>(state_.stream >> 32);
    }
    state_.counter += n;
    // philox4x32_10, lane-parallel: the key is the same for every block.
    std::uint32_t key0 = static_cast<std::uint32_t>(state_.seed), key1 = static_cast<std::uint32_t>(state_.seed >> 32);
    for (int round = 0; round < 10; ++round) {
      for (std::size_t k = 0; k < kLanes; ++k) {
        const std::uint64_t p0 = std::uint64_t{kMul0} * c0[k];
        const std::uint64_t p1 = std::uint64_t{kMul1} * c2[k];
        const std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1[k] ^ key0;
        const std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3[k] ^ key1;
        c1[k] = static_cast<std::uint32_t>(p1), c3[k] = static_cast<std::uint32_t>(p0);
        c0[k] = n0, c2[k] = n2;
      }
      key0 += kWeyl0;
      key1 += kWeyl1;
    }
    // In passes, so that the libm calls stand alone and the rest vectorises.
    std::array<double, kLanes> r;
    for (std::size_t k = 0; k < n; ++k) {
      const double u1 = (static_cast<double>(((std::uint64_t{c1[k]} << 32) | c0[k]) >> 11) + 1.0) * 0x1.0p-53;
      r[k] = -2.0 * std::log(u1);
    }
    for (std::size_t k = 0; k < n; ++k) r[k] = std::sqrt(r[k]);
    for (std::size_t k = 0; k < n; ++k) {
      const double u2 = static_cast<double>(((std::uint64_t{c3[k]} << 32) | c2[k]) >> 11) * 0x1.0p-53;
      const double theta = 2.0 * std::numbers::pi * u2;
      cos_part[k] = std::cos(theta);
      sin_part[k] = std::sin(theta);
    }
    for (std::size_t k = 0; k < n; ++k) cos_part[k] *= r[k], sin_part[k] *= r[k];
  }

  State state_;
};

}  // namespace ddpm
