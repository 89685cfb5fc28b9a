#include <catch2/catch.hpp>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/linear.hpp"
#include "support/gradcheck.hpp"

using namespace ddpm;
using Lin = nn::Linear<double, backend::Reference>;

TEST_CASE("Linear: parameter names, shapes and init", "[nn]") {
  Parameters<double> p;
  Lin a(p, "time_embedding.linear_1", 5, 7);
  Lin b(p, "nobias", 3, 2, false);
  REQUIRE(p.count() == 3);
  CHECK(p.info(p.id("time_embedding.linear_1.weight")).shape == Shape{7, 5});
  CHECK(p.info(p.id("time_embedding.linear_1.bias")).shape == Shape{7});
  CHECK_FALSE(p.contains("nobias.bias"));
  Rng rng(3);
  a.init(rng);
  const double bound = 1 / std::sqrt(5.0);
  double mx = 0;
  for (double v : p.values().subspan(0, 42)) mx = std::max(mx, std::abs(v));
  CHECK(mx <= bound);
  CHECK(mx > 0.8 * bound);
}

TEST_CASE("Linear: forward is x W^T + b", "[nn]") {
  Parameters<double> p;
  Lin lin(p, "l", 2, 3);
  const double wv[] = {1, 2, 3, 4, 5, 6}, bv[] = {0.5, -0.5, 1};
  std::copy(wv, wv + 6, p.value(lin.weight_id()).begin());
  std::copy(bv, bv + 3, p.value(lin.bias_id()).begin());
  Tensor<double> x({1, 2});
  x[0] = 1, x[1] = -1;
  auto y = lin.forward(x.view());
  REQUIRE(y.shape() == Shape{1, 3});
  CHECK(y[0] == Approx(-1 + 0.5));
  CHECK(y[1] == Approx(-1 - 0.5));
  CHECK(y[2] == Approx(-1 + 1));
}

TEST_CASE("Linear: gradients match finite differences", "[nn][gradcheck]") {
  for (bool bias : {true, false})
    for (Shape xs : {Shape{1, 5}, Shape{4, 5}, Shape{2, 3, 5}}) {
      Parameters<double> p;
      Lin lin(p, "lin", 5, 3, bias);
      auto r = test::gradcheck_layer(bias ? "Linear bias" : "Linear nobias", lin, p, xs, 11);
      CHECK(r.worst < 1e-6);
    }
}

TEST_CASE("Linear: shape errors name the layer", "[nn]") {
  Parameters<double> p;
  Lin lin(p, "down.proj", 4, 2);
  Tensor<double> x({2, 3});
  CHECK_THROWS_WITH(lin.forward(x.view()), Catch::Contains("down.proj") && Catch::Contains("[..., 4]") &&
                                               Catch::Contains("[2, 3]"));
  Tensor<double> ok({2, 4}), bad({2, 3});
  CHECK_THROWS_WITH(lin.backward(ok.view()), Catch::Contains("before forward"));
  lin.forward(ok.view());
  CHECK_THROWS_WITH(lin.backward(bad.view()), Catch::Contains("down.proj") && Catch::Contains("[2, 2]"));
}
