#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "support/gradcheck.hpp"

using namespace ddpm;
using GN = nn::GroupNorm<double, backend::Reference>;

TEST_CASE("GroupNorm: names and init", "[nn]") {
  Parameters<double> p;
  GN g(p, "norm1", 4, 12, 1e-6);
  GN h(p, "plain", 2, 4, 1e-5, false);
  CHECK(p.count() == 2);
  CHECK(p.info(p.id("norm1.weight")).shape == Shape{12});
  CHECK(p.info(p.id("norm1.bias")).shape == Shape{12});
  Rng rng(0);
  rng.fill_normal(p.values());
  g.init(rng);
  for (double v : p.value(g.weight_id())) CHECK(v == 1.0);
  for (double v : p.value(g.bias_id())) CHECK(v == 0.0);
  CHECK_THROWS_WITH(GN(p, "bad", 3, 8), Catch::Contains("bad") && Catch::Contains("multiple"));
}

TEST_CASE("GroupNorm: zero mean and unit variance per group before the affine map", "[nn]") {
  Parameters<double> p;
  GN g(p, "gn", 3, 6, 0.0, false);
  Rng rng(5);
  Tensor<double> x({2, 6, 3, 5});
  test::randomize(x.view(), rng, 3.0);
  for (auto& v : x.span()) v += 2.0;
  auto y = g.forward(x.view());
  const index_t per = 2 * 15;
  for (index_t n = 0; n < 2; ++n)
    for (index_t gi = 0; gi < 3; ++gi) {
      double s = 0, s2 = 0;
      for (index_t i = 0; i < per; ++i) s += y[(n * 6 + 2 * gi) * 15 + i];
      for (index_t i = 0; i < per; ++i) s2 += y[(n * 6 + 2 * gi) * 15 + i] * y[(n * 6 + 2 * gi) * 15 + i];
      CHECK(s / per == Approx(0).margin(1e-13));
      CHECK(s2 / per == Approx(1).epsilon(1e-12));
    }
  // The affine map is applied per channel after normalising.
  GN a(p, "affine", 3, 6, 0.0);
  rng.fill_normal(p.value(a.weight_id()).span());
  rng.fill_normal(p.value(a.bias_id()).span());
  auto ya = a.forward(x.view());
  for (index_t i = 0; i < x.numel(); ++i) {
    const index_t c = (i / 15) % 6;
    CHECK(ya[i] == Approx(y[i] * p.value(a.weight_id())[c] + p.value(a.bias_id())[c]).epsilon(1e-13));
  }
}

TEST_CASE("GroupNorm: gradients match finite differences", "[nn][gradcheck]") {
  struct Case {
    int groups;
    index_t c;
    Shape x;
    bool affine;
    double eps;
  };
  const Case cases[] = {{2, 6, {2, 6, 3, 3}, true, 1e-5}, {1, 5, {1, 5, 3, 1}, true, 1e-6},
                        {5, 5, {1, 5, 2, 3}, true, 1e-6}, {3, 6, {2, 6, 5}, false, 1e-5},
                        {2, 4, {3, 4}, true, 1e-3}};
  int i = 0;
  for (const auto& c : cases) {
    Parameters<double> p;
    GN g(p, "gn", c.groups, c.c, c.eps, c.affine);
    auto r = test::gradcheck_layer("GroupNorm case " + std::to_string(i), g, p, c.x, 40 + static_cast<std::uint64_t>(i));
    ++i;
    CHECK(r.worst < 1e-6);
  }
}

TEST_CASE("GroupNorm with a fused SiLU: silu of the plain output, gradients match finite differences",
          "[nn][gradcheck]") {
  Rng rng(8);
  Parameters<double> p;
  GN plain(p, "plain", 2, 6, 1e-5);
  GN fused(p, "fused", 2, 6, 1e-5, true, nn::PostActivation::SiLU);
  CHECK(fused.post_activation() == nn::PostActivation::SiLU);
  rng.fill_normal(p.values());  // same role, different random affine params: copy them over
  std::copy(p.value(plain.weight_id()).begin(), p.value(plain.weight_id()).end(), p.value(fused.weight_id()).begin());
  std::copy(p.value(plain.bias_id()).begin(), p.value(plain.bias_id()).end(), p.value(fused.bias_id()).begin());
  Tensor<double> x({2, 6, 3, 4});
  test::randomize(x.view(), rng, 2.0);
  const auto u = plain.forward(x.view());
  const auto y = fused.forward(x.view());
  for (index_t i = 0; i < x.numel(); ++i) CHECK(y[i] == Approx(u[i] / (1 + std::exp(-u[i]))).epsilon(1e-14));

  struct Case {
    int groups;
    index_t c;
    Shape x;
    bool affine;
  };
  const Case cases[] = {{2, 6, {2, 6, 3, 3}, true}, {3, 3, {1, 3, 2, 5}, true}, {2, 4, {2, 4, 7}, false}};
  int i = 0;
  for (const auto& c : cases) {
    Parameters<double> q;
    GN g(q, "gn", c.groups, c.c, 1e-5, c.affine, nn::PostActivation::SiLU);
    auto r = test::gradcheck_layer("GroupNorm+SiLU case " + std::to_string(i), g, q, c.x,
                                   60 + static_cast<std::uint64_t>(i));
    ++i;
    CHECK(r.worst < 1e-6);
  }
}

TEST_CASE("GroupNorm: shape errors", "[nn]") {
  Parameters<double> p;
  GN g(p, "mid_block.attentions.0.group_norm", 2, 4);
  Tensor<double> x({1, 6, 2, 2});
  CHECK_THROWS_WITH(g.forward(x.view()),
                    Catch::Contains("mid_block.attentions.0.group_norm") && Catch::Contains("[1, 6, 2, 2]"));
}
