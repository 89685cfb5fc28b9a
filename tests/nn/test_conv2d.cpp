#include <catch2/catch.hpp>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/linear.hpp"
#include "support/gradcheck.hpp"

using namespace ddpm;
using Conv = nn::Conv2d<double, backend::Reference>;

TEST_CASE("Conv2d: parameter names, shapes and init", "[nn]") {
  Parameters<double> p;
  Conv c(p, "conv_in", 3, 5, 3, 1, 1);
  Conv d(p, "nobias", 2, 2, 1, 1, 0, false);
  CHECK(p.info(p.id("conv_in.weight")).shape == Shape{5, 3, 3, 3});
  CHECK(p.info(p.id("conv_in.bias")).shape == Shape{5});
  CHECK_FALSE(p.contains("nobias.bias"));
  Rng rng(1);
  c.init(rng);
  const double bound = 1 / std::sqrt(27.0);
  for (double v : p.values().subspan(0, 5 * 27 + 5)) CHECK(std::abs(v) <= bound);
}

TEST_CASE("Conv2d: a 1x1 convolution is a per-pixel linear map", "[nn]") {
  Parameters<double> p;
  Conv c(p, "c", 3, 4, 1);
  nn::Linear<double, backend::Reference> lin(p, "l", 3, 4);
  Rng rng(2);
  rng.fill_normal(p.values());
  std::copy(p.value(c.weight_id()).begin(), p.value(c.weight_id()).end(), p.value(lin.weight_id()).begin());
  std::copy(p.value(c.bias_id()).begin(), p.value(c.bias_id()).end(), p.value(lin.bias_id()).begin());
  Tensor<double> x({2, 3, 3, 2});
  test::randomize(x.view(), rng);
  auto y = c.forward(x.view());
  REQUIRE(y.shape() == Shape{2, 4, 3, 2});
  for (index_t n = 0; n < 2; ++n)
    for (index_t s = 0; s < 6; ++s) {
      Tensor<double> px({1, 3});
      for (index_t ci = 0; ci < 3; ++ci) px[ci] = x[(n * 3 + ci) * 6 + s];
      auto ly = lin.forward(px.view());
      for (index_t co = 0; co < 4; ++co) CHECK(y[(n * 4 + co) * 6 + s] == Approx(ly[co]).epsilon(1e-14));
    }
}

TEST_CASE("Conv2d: gradients match finite differences", "[nn][gradcheck]") {
  struct Case {
    index_t ci, co, k;
    backend::Conv2dParams cv;
    Shape x;
    bool bias;
  };
  const Case cases[] = {
      {3, 5, 3, backend::Conv2dParams::symmetric(1, 1), {2, 3, 5, 4}, true},
      {2, 3, 3, backend::Conv2dParams::symmetric(1, 0), {1, 2, 5, 5}, true},
      {3, 2, 3, backend::Conv2dParams::symmetric(2, 1), {2, 3, 7, 5}, true},   // stride 2, odd H/W
      {2, 3, 3, backend::Conv2dParams{2, 0, 1, 0, 1}, {1, 2, 5, 6}, true},     // asymmetric pad
      {5, 3, 1, backend::Conv2dParams::symmetric(1, 0), {1, 5, 3, 3}, false},  // 1x1, no bias
      {3, 3, 2, backend::Conv2dParams{1, 1, 0, 0, 2}, {1, 3, 4, 3}, true},     // even kernel, uneven pads
  };
  int i = 0;
  for (const auto& c : cases) {
    Parameters<double> p;
    Conv conv(p, "conv", c.ci, c.co, c.k, c.cv, c.bias);
    auto r = test::gradcheck_layer("Conv2d case " + std::to_string(i), conv, p, c.x, 100 + static_cast<std::uint64_t>(i));
    ++i;
    CHECK(r.worst < 1e-6);
  }
}

TEST_CASE("Conv2d: output sizes and shape errors", "[nn]") {
  Parameters<double> p;
  Conv c(p, "down_blocks.0.downsamplers.0.conv", 2, 2, 3, 2, 1);
  Tensor<double> x({1, 2, 7, 8});
  CHECK(c.forward(x.view()).shape() == Shape{1, 2, 4, 4});
  Tensor<double> bad({1, 3, 7, 8});
  CHECK_THROWS_WITH(c.forward(bad.view()), Catch::Contains("down_blocks.0.downsamplers.0.conv") &&
                                               Catch::Contains("[N, 2, H, W]") && Catch::Contains("[1, 3, 7, 8]"));
  Conv big(p, "big", 2, 2, 5);
  Tensor<double> small({1, 2, 3, 3});
  CHECK_THROWS_WITH(big.forward(small.view()), Catch::Contains("big") && Catch::Contains("smaller"));
}
