#pragma once
// A tiny synthetic digit set in MNIST's IDX files, for the examples' smoke
// tests: <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/random.hpp"
#include "ddpm/io/idx.hpp"

namespace examples_test {

namespace fs = std::filesystem;

// Digit k is a bright horizontal bar at rows 2k + 4 .. 2k + 6, plus noise.
inline fs::path write_synthetic(const fs::path& dir, ddpm::index_t n_train, ddpm::index_t n_test) {
  fs::create_directories(dir);
  ddpm::Rng rng(42);
  for (auto [split, n] : {std::pair{"train", n_train}, std::pair{"t10k", n_test}}) {
    std::vector<std::uint8_t> images(static_cast<std::size_t>(n * 784)), labels(static_cast<std::size_t>(n));
    for (ddpm::index_t i = 0; i < n; ++i) {
      const int k = static_cast<int>(i % 10);
      labels[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(k);
      for (int r = 0; r < 28; ++r)
        for (int c = 0; c < 28; ++c) {
          const bool on = r >= 2 * k + 4 && r < 2 * k + 7 && c >= 4 && c < 24;
          const double v = (on ? 230.0 : 10.0) + 10.0 * rng.normal();
          images[static_cast<std::size_t>(i * 784 + r * 28 + c)] = static_cast<std::uint8_t>(std::clamp(v, 0.0, 255.0));
        }
    }
    ddpm::io::write_idx(dir / (std::string(split) + "-images-idx3-ubyte"), {n, 28, 28}, images);
    ddpm::io::write_idx(dir / (std::string(split) + "-labels-idx1-ubyte"), {n}, labels);
  }
  return dir;
}

}  // namespace examples_test
