#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/timestep_embedding.hpp"

using namespace ddpm;
using R = backend::Reference;
using TE = nn::SinusoidalTimestepEmbedding<double, R>;

namespace {
// The formula in double.
double expected(double t, index_t i, index_t dim, bool flip, double shift) {
  const index_t half = dim / 2;
  if (i >= 2 * half) return 0.0;
  const bool first = i < half;
  const index_t k = first ? i : i - half;
  const double arg = t * std::exp(-std::log(10000.0) * static_cast<double>(k) / (static_cast<double>(half) - shift));
  return (first != flip) ? std::sin(arg) : std::cos(arg);
}
}  // namespace

TEST_CASE("Timestep embedding: exact double mode follows the formula", "[nn]") {
  const std::vector<double> ts{0.0, 1.0, 17.5, 999.0, 423.25};
  for (bool flip : {false, true})
    for (double shift : {0.0, 1.0})
      for (index_t dim : {8, 9, 32}) {
        nn::SinusoidalTimestepEmbedding<double, R> emb({.dim = dim, .flip_sin_to_cos = flip, .freq_shift = shift,
                                                        .numerics = nn::Numerics::Exact});
        auto y = emb.forward(ts);
        REQUIRE(y.shape() == Shape{5, dim});
        for (index_t r = 0; r < 5; ++r)
          for (index_t i = 0; i < dim; ++i) {
            INFO("flip " << flip << " shift " << shift << " dim " << dim << " t " << ts[static_cast<std::size_t>(r)]
                         << " i " << i);
            CHECK(y[r * dim + i] ==
                  Approx(expected(ts[static_cast<std::size_t>(r)], i, dim, flip, shift)).margin(1e-12));
          }
      }
}

TEST_CASE("Timestep embedding: diffusers mode is the float32 computation", "[nn]") {
  const std::vector<double> ts{0.0, 3.0, 999.0, 500.5};
  nn::SinusoidalTimestepEmbedding<double, R> d({.dim = 16, .flip_sin_to_cos = false, .freq_shift = 1.0});
  nn::SinusoidalTimestepEmbedding<float, R> f({.dim = 16, .flip_sin_to_cos = false, .freq_shift = 1.0});
  auto yd = d.forward(ts);
  auto yf = f.forward(ts);
  double max_diff_exact = 0;
  for (index_t i = 0; i < yd.numel(); ++i) {
    // Same float32 values, converted to double.
    CHECK(yd[i] == static_cast<double>(yf[i]));
    // Within float32 rounding of t * freq (about 6e-5 for t near 1000) of the formula.
    const double e = expected(ts[static_cast<std::size_t>(i / 16)], i % 16, 16, false, 1.0);
    CHECK(std::abs(yd[i] - e) < 2e-4);
    max_diff_exact = std::max(max_diff_exact, std::abs(yd[i] - e));
  }
  CHECK(max_diff_exact > 0);  // it really is float32
  // Every value is exactly a float.
  for (index_t i = 0; i < yd.numel(); ++i) CHECK(static_cast<double>(static_cast<float>(yd[i])) == yd[i]);
  // t = 0 gives sin 0 = 0 and cos 0 = 1.
  for (index_t i = 0; i < 8; ++i) CHECK(yd[i] == 0.0);
  for (index_t i = 8; i < 16; ++i) CHECK(yd[i] == 1.0);
}

TEST_CASE("Timestep embedding: tensor input and errors", "[nn]") {
  nn::SinusoidalTimestepEmbedding<double, R> e({.dim = 4, .numerics = nn::Numerics::Exact});
  Tensor<double> t({2});
  t[0] = 5, t[1] = 7;
  auto y = e.forward(t.view());
  CHECK(y.shape() == Shape{2, 4});
  CHECK(y[4] == Approx(std::cos(7.0)));
  nn::TimestepEmbeddingOptions zero{.dim = 0}, shift{.dim = 2, .freq_shift = 1.0};
  CHECK_THROWS_AS(TE(zero), Error);
  CHECK_THROWS_AS(TE(shift), Error);
}
