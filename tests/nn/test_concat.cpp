#include <catch2/catch.hpp>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/concat.hpp"
#include "support/gradcheck.hpp"

using namespace ddpm;

TEST_CASE("ChannelConcat: [hidden, skip] on channels and its split backward", "[nn][gradcheck]") {
  nn::ChannelConcat<double, backend::Reference> cat;
  Tensor<double> a({2, 3, 2, 3}), b({2, 1, 2, 3});
  Rng rng(4);
  test::randomize(a.view(), rng);
  test::randomize(b.view(), rng);
  auto y = cat.forward(a.view(), b.view());
  REQUIRE(y.shape() == Shape{2, 4, 2, 3});
  for (index_t n = 0; n < 2; ++n)
    for (index_t s = 0; s < 6; ++s) {
      for (index_t c = 0; c < 3; ++c) CHECK(y.at(n, c, s / 3, s % 3) == a.at(n, c, s / 3, s % 3));
      CHECK(y.at(n, 3, s / 3, s % 3) == b.at(n, 0, s / 3, s % 3));
    }
  ConstTensorView<double> da;
  auto r = test::gradcheck(
      "ChannelConcat", [&] { return cat.forward(a.view(), b.view()); },
      [&](ConstTensorView<double> dy) { da = cat.backward(dy); },
      {{"hidden", a.view(), [&] { return da; }}, {"skip", b.view(), [&] { return cat.skip_grad(); }}}, nullptr);
  CHECK(r.worst < 1e-6);
  Tensor<double> bad({2, 1, 3, 3});
  CHECK_THROWS_WITH(cat.forward(a.view(), bad.view()), Catch::Contains("[2, 3, 2, 3]") && Catch::Contains("[2, 1, 3, 3]"));
}
