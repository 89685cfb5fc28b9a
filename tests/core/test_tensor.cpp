#include <catch2/catch.hpp>

#include "ddpm/core/tensor.hpp"

using namespace ddpm;

TEST_CASE("shapes", "[tensor]") {
  Shape s{2, 3, 4, 5};
  CHECK(s.rank() == 4);
  CHECK(s.numel() == 120);
  CHECK(s.dim(-1) == 5);
  CHECK(s.drop_front() == Shape{3, 4, 5});
  CHECK(s.str() == "[2, 3, 4, 5]");
  CHECK_THROWS_AS((Shape{1, -2}), Error);
  CHECK_THROWS_AS((Shape{1, 1, 1, 1, 1, 1, 1}), Error);
}

TEST_CASE("tensors own aligned storage; views are cheap and checked", "[tensor]") {
  Tensor<float> t({2, 3, 2});
  CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
  for (index_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(i);
  CHECK(t.at(1, 2, 1) == 11.0f);
  auto v = t.view().slice(1, 1);
  CHECK(v.shape() == Shape{1, 3, 2});
  CHECK(v[0] == 6.0f);
  CHECK(v.data() == t.data() + 6);
  CHECK_THROWS_AS(t.view().slice(1, 2), Error);
  CHECK_THROWS_AS(t.at(2, 0, 0), Error);
  CHECK_THROWS_AS(t.view().reshape({5}), Error);
  ConstTensorView<float> cv = t.view();
  CHECK(cv.numel() == 12);
  Tensor<double> d = t.cast<double>();
  CHECK(d[11] == 11.0);
  CHECK_THROWS_AS(Tensor<float>(Shape{3}, std::span<const float>(t.data(), 2)), Error);
}

TEST_CASE("resize reuses the allocation when it fits", "[tensor]") {
  Tensor<float> t({4, 100});
  const float* p = t.data();
  t.resize({2, 100});
  t.resize({4, 100});
  CHECK(t.data() == p);
}
