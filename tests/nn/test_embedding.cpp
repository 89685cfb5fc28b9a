#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/embedding.hpp"
#include "support/gradcheck.hpp"

using namespace ddpm;
using Emb = nn::Embedding<double, backend::Reference>;

TEST_CASE("Embedding: rows of the table, accumulated gradient rows", "[nn][gradcheck]") {
  Parameters<double> p;
  Emb e(p, "class_embedding", 4, 3);
  CHECK(p.info(p.id("class_embedding.weight")).shape == Shape{4, 3});
  Rng rng(8);
  e.init(rng);
  const std::vector<std::int64_t> labels{2, 0, 2, 3, 1};
  auto y = e.forward(labels);
  REQUIRE(y.shape() == Shape{5, 3});
  auto w = p.value(e.weight_id());
  for (index_t i = 0; i < 5; ++i)
    for (index_t j = 0; j < 3; ++j) CHECK(y[i * 3 + j] == w[labels[static_cast<std::size_t>(i)] * 3 + j]);
  // Repeated labels sum their rows' gradients (checked by finite differences too).
  auto r = test::gradcheck(
      "Embedding", [&] { return e.forward(labels); }, [&](ConstTensorView<double> dy) { e.backward(dy); }, {}, &p);
  CHECK(r.worst < 1e-6);
  p.zero_grad();
  e.forward(labels);
  Tensor<double> dy({5, 3}, 1.0);
  e.backward(dy.view());
  CHECK(p.grad(e.weight_id()).at(2, 0) == 2.0);
  CHECK(p.grad(e.weight_id()).at(0, 1) == 1.0);
}

TEST_CASE("Embedding: labels out of range are errors naming the label and the range", "[nn]") {
  Parameters<double> p;
  Emb e(p, "class_embedding", 10, 2);
  const std::vector<std::int64_t> bad{1, 10};
  CHECK_THROWS_WITH(e.forward(bad), Catch::Contains("class_embedding") && Catch::Contains("label 10") &&
                                        Catch::Contains("[0, 10)"));
  const std::vector<std::int64_t> neg{-1};
  CHECK_THROWS_WITH(e.forward(neg), Catch::Contains("label -1"));
}
