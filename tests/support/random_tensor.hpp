#pragma once
// Test inputs: a tensor of N(0, 1) values from a given seed.
#include <cstdint>

#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::test {

inline Tensor<double> randn(Shape s, std::uint64_t seed) {
  Tensor<double> t(s);
  Rng rng(seed);
  rng.fill_normal(t.span());
  return t;
}

}  // namespace ddpm::test
