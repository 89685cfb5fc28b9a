#include <catch2/catch.hpp>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/activation.hpp"
#include "support/gradcheck.hpp"

using namespace ddpm;

TEST_CASE("SiLU: values and gradient", "[nn][gradcheck]") {
  nn::SiLU<double, backend::Reference> act;
  Tensor<double> x({2, 3, 2, 3});
  Rng rng(9);
  test::randomize(x.view(), rng, 3.0);
  auto y = act.forward(x.view());
  for (index_t i = 0; i < x.numel(); ++i) CHECK(y[i] == Approx(x[i] / (1 + std::exp(-x[i]))).epsilon(1e-15));
  ConstTensorView<double> dx;
  auto r = test::gradcheck(
      "SiLU", [&] { return act.forward(x.view()); }, [&](ConstTensorView<double> dy) { dx = act.backward(dy); },
      {{"x", x.view(), [&] { return dx; }}}, nullptr);
  CHECK(r.worst < 1e-6);
}
