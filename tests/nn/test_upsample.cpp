#include <catch2/catch.hpp>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/upsample.hpp"
#include "support/gradcheck.hpp"

using namespace ddpm;
using Up = nn::Upsample2D<double, backend::Reference>;

TEST_CASE("Upsample2D: names, nearest copy and conv", "[nn]") {
  Parameters<double> p;
  Up up(p, "up_blocks.0.upsamplers.0", 3);
  CHECK(p.info(p.id("up_blocks.0.upsamplers.0.conv.weight")).shape == Shape{3, 3, 3, 3});
  CHECK(p.contains("up_blocks.0.upsamplers.0.conv.bias"));
  Up plain(p, "plain", 2, false);
  Tensor<double> x({1, 2, 2, 3});
  Rng rng(1);
  test::randomize(x.view(), rng);
  auto y = plain.forward(x.view());
  REQUIRE(y.shape() == Shape{1, 2, 4, 6});
  for (index_t c = 0; c < 2; ++c)
    for (index_t i = 0; i < 4; ++i)
      for (index_t j = 0; j < 6; ++j) CHECK(y.at(0, c, i, j) == x.at(0, c, i / 2, j / 2));
  Tensor<double> x3({2, 3, 3, 3});
  CHECK(up.forward(x3.view()).shape() == Shape{2, 3, 6, 6});
}

TEST_CASE("Upsample2D: gradients match finite differences", "[nn][gradcheck]") {
  for (bool conv : {true, false})
    for (Shape xs : {Shape{1, 3, 3, 2}, Shape{2, 3, 1, 1}}) {
      Parameters<double> p;
      Up up(p, "up", 3, conv, conv ? 5 : 0);
      auto r = test::gradcheck_layer(conv ? "Upsample2D conv" : "Upsample2D", up, p, xs, 21);
      CHECK(r.worst < 1e-6);
    }
}
