#pragma once
// Normals drawn on a thread pool, equal bit for bit to Rng::fill_normal.
//
// Philox is counter-based: the pair of normals from block k depends only on
// (seed, stream, k). So the pairs can be split among threads, each starting
// its own Rng at its first block, and the result is the same for every
// thread count, and the same as drawing them one after another.
#include <cstddef>
#include <span>

#include "ddpm/core/random.hpp"
#include "ddpm/core/thread_pool.hpp"

namespace ddpm {

// Fewer pairs than this are drawn on the calling thread: waking the pool
// would cost more than it saves.
inline constexpr std::size_t kParallelNormalMinPairs = 2048;

// The same values as rng.fill_normal(out, mean, stddev), and the same state
// of `rng` afterwards.
template <class T>
void fill_normal(Rng& rng, std::span<T> out, ThreadPool& pool, double mean = 0.0, double stddev = 1.0) {
  std::size_t i = 0;
  if (rng.state().has_spare && !out.empty()) out[i++] = static_cast<T>(mean + stddev * rng.normal());
  const std::size_t pairs = (out.size() - i) / 2;
  const int parts = pool.size();
  if (pairs < kParallelNormalMinPairs || parts <= 1) {
    rng.fill_normal(out.subspan(i), mean, stddev);
    return;
  }
  Rng::State start = rng.state();  // has_spare is false here
  pool.run([&](int tid) {
    const std::size_t first = pairs * static_cast<std::size_t>(tid) / static_cast<std::size_t>(parts);
    const std::size_t last = pairs * static_cast<std::size_t>(tid + 1) / static_cast<std::size_t>(parts);
    Rng::State s = start;
    s.counter += first;
    Rng part(s);
    part.fill_normal(out.subspan(i + 2 * first, 2 * (last - first)), mean, stddev);
  });
  start.counter += pairs;
  rng.set_state(start);
  i += 2 * pairs;
  if (i < out.size()) out[i] = static_cast<T>(mean + stddev * rng.normal());
}

}  // namespace ddpm
