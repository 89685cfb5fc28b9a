#include <catch2/catch.hpp>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/downsample.hpp"
#include "support/gradcheck.hpp"

using namespace ddpm;
using Down = nn::Downsample2D<double, backend::Reference>;

TEST_CASE("Downsample2D: names and output sizes", "[nn]") {
  Parameters<double> p;
  Down d(p, "down_blocks.1.downsamplers.0", 4);
  CHECK(p.info(p.id("down_blocks.1.downsamplers.0.conv.weight")).shape == Shape{4, 4, 3, 3});
  Down z(p, "z", 4, 6, 0);
  for (index_t h : {4, 5, 8, 9}) {
    Tensor<double> x({1, 4, h, h + 1});
    CHECK(d.forward(x.view()).shape() == Shape{1, 4, (h + 1) / 2, (h + 2) / 2});
    CHECK(z.forward(x.view()).shape() == Shape{1, 6, h / 2, (h + 1) / 2});
  }
}

TEST_CASE("Downsample2D padding 0 pads bottom/right only", "[nn]") {
  // Equals a padding-0 stride-2 conv of the input zero-padded by one row at the bottom and one column at the right.
  Parameters<double> p;
  Down z(p, "z", 2, 3, 0);
  nn::Conv2d<double, backend::Reference> ref(p, "ref", 2, 3, 3, 2, 0);
  Rng rng(3);
  rng.fill_normal(p.values());
  std::copy(p.value(z.conv().weight_id()).begin(), p.value(z.conv().weight_id()).end(),
            p.value(ref.weight_id()).begin());
  std::copy(p.value(z.conv().bias_id()).begin(), p.value(z.conv().bias_id()).end(), p.value(ref.bias_id()).begin());
  Tensor<double> x({1, 2, 4, 5}), xp({1, 2, 5, 6});
  test::randomize(x.view(), rng);
  for (index_t c = 0; c < 2; ++c)
    for (index_t i = 0; i < 4; ++i)
      for (index_t j = 0; j < 5; ++j) xp.at(0, c, i, j) = x.at(0, c, i, j);
  auto a = z.forward(x.view());
  auto b = ref.forward(xp.view());
  REQUIRE(a.shape() == b.shape());
  for (index_t i = 0; i < a.numel(); ++i) CHECK(a[i] == Approx(b[i]).epsilon(1e-14));
}

TEST_CASE("Downsample2D: gradients match finite differences", "[nn][gradcheck]") {
  for (index_t pad : {0, 1})
    for (Shape xs : {Shape{1, 3, 5, 5}, Shape{2, 3, 4, 7}}) {
      Parameters<double> p;
      Down d(p, "down", 3, 2, pad);
      auto r = test::gradcheck_layer("Downsample2D pad " + std::to_string(pad), d, p, xs, 31);
      CHECK(r.worst < 1e-6);
    }
}
