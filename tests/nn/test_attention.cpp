#include <catch2/catch.hpp>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/attention.hpp"
#include "ddpm/nn/linear.hpp"
#include "support/gradcheck.hpp"

using namespace ddpm;
using Attn = nn::AttentionBlock<double, backend::Reference>;

TEST_CASE("AttentionBlock: names, shapes and heads", "[nn]") {
  Parameters<double> p;
  Attn a(p, "mid_block.attentions.0", {.channels = 6, .head_dim = 2, .norm_groups = 3});
  CHECK(a.heads() == 3);
  CHECK(a.head_dim() == 2);
  CHECK(a.scale() == Approx(1 / std::sqrt(2.0)));
  for (const char* n : {"group_norm.weight", "group_norm.bias", "to_q.weight", "to_q.bias", "to_k.weight",
                        "to_k.bias", "to_v.weight", "to_v.bias", "to_out.0.weight", "to_out.0.bias"})
    CHECK(p.contains(std::string("mid_block.attentions.0.") + n));
  CHECK(p.info(p.id("mid_block.attentions.0.to_q.weight")).shape == Shape{6, 6});
  Parameters<double> q;
  Attn one(q, "a", {.channels = 5, .norm_groups = 0});
  CHECK(one.heads() == 1);
  CHECK(one.head_dim() == 5);
  CHECK_FALSE(q.contains("a.group_norm.weight"));
  // head_dim not dividing channels: heads = C / head_dim, projections to heads * head_dim.
  Parameters<double> r;
  Attn odd(r, "b", {.channels = 5, .head_dim = 2, .norm_groups = 5});
  CHECK(odd.heads() == 2);
  CHECK(r.info(r.id("b.to_q.weight")).shape == Shape{4, 5});
  CHECK(r.info(r.id("b.to_out.0.weight")).shape == Shape{5, 4});
}

TEST_CASE("AttentionBlock: one token gives (to_out(to_v(x)) + x) / factor", "[nn]") {
  Parameters<double> p;
  Attn a(p, "attn", {.channels = 4, .head_dim = 2, .norm_groups = 0, .rescale_output_factor = 2.0});
  nn::Linear<double, backend::Reference> v(p, "v", 4, 4), o(p, "o", 4, 4);
  Rng rng(6);
  rng.fill_normal(p.values());
  auto copy = [&](const std::string& from, const std::string& to) {
    auto s = p.value(p.id(from));
    std::copy(s.begin(), s.end(), p.value(p.id(to)).begin());
  };
  copy("attn.to_v.weight", "v.weight");
  copy("attn.to_v.bias", "v.bias");
  copy("attn.to_out.0.weight", "o.weight");
  copy("attn.to_out.0.bias", "o.bias");
  Tensor<double> x({3, 4, 1, 1});
  test::randomize(x.view(), rng);
  auto y = a.forward(x.view());
  auto ref = o.forward(v.forward(x.view().reshape({3, 4})));
  for (index_t i = 0; i < 12; ++i) CHECK(y[i] == Approx((ref[i] + x[i]) / 2).epsilon(1e-13));
  for (index_t i = 0; i < a.probs().numel(); ++i) CHECK(a.probs()[i] == 1.0);
}

TEST_CASE("AttentionBlock: diffusers numerics use a float32 softmax", "[nn]") {
  Parameters<double> p;
  Attn ex(p, "a", {.channels = 4, .head_dim = 2, .norm_groups = 2, .numerics = nn::Numerics::Exact});
  Rng rng(12);
  rng.fill_normal(p.values());
  Tensor<double> x({2, 4, 3, 3});
  test::randomize(x.view(), rng);
  Tensor<double> y_exact = Tensor<double>::copy_of(ex.forward(x.view()));
  Tensor<double> p_exact = Tensor<double>::copy_of(ex.probs());
  Parameters<double> p2;
  Attn df(p2, "a", {.channels = 4, .head_dim = 2, .norm_groups = 2});
  std::copy(p.values().begin(), p.values().end(), p2.values().begin());
  auto y = df.forward(x.view());
  double diff = 0;
  for (index_t i = 0; i < y.numel(); ++i) {
    CHECK(y[i] == Approx(y_exact[i]).margin(1e-5));
    diff = std::max(diff, std::abs(y[i] - y_exact[i]));
  }
  CHECK(diff > 0);
  for (index_t i = 0; i < p_exact.numel(); ++i) {
    CHECK(df.probs()[i] == Approx(p_exact[i]).margin(1e-6));
    CHECK(static_cast<double>(static_cast<float>(df.probs()[i])) == df.probs()[i]);
  }
  // float layers: both numerics are the same computation.
  Parameters<float> pf;
  nn::AttentionBlock<float, backend::Reference> af(pf, "a", {.channels = 4, .head_dim = 2, .norm_groups = 2});
  std::transform(p.values().begin(), p.values().end(), pf.values().begin(), [](double v) { return float(v); });
  Tensor<float> xf = x.cast<float>();
  auto yf = af.forward(xf.view());
  for (index_t i = 0; i < yf.numel(); ++i) CHECK(yf[i] == Approx(y_exact[i]).margin(1e-4));
}

TEST_CASE("AttentionBlock: gradients match finite differences", "[nn][gradcheck]") {
  struct Case {
    nn::AttentionOptions opt;
    Shape x;
  };
  const Case cases[] = {
      {{.channels = 6, .head_dim = 2, .norm_groups = 3, .numerics = nn::Numerics::Exact}, {2, 6, 3, 1}},
      {{.channels = 4, .norm_groups = 2, .rescale_output_factor = 2.0, .numerics = nn::Numerics::Exact}, {1, 4, 3, 3}},
      {{.channels = 5, .head_dim = 2, .norm_groups = 0, .numerics = nn::Numerics::Exact}, {1, 5, 2, 3}},
      {{.channels = 3, .head_dim = 1, .norm_groups = 1, .eps = 1e-6, .numerics = nn::Numerics::Exact}, {2, 3, 1, 1}},
  };
  int i = 0;
  for (const auto& c : cases) {
    Parameters<double> p;
    Attn a(p, "attn", c.opt);
    auto r = test::gradcheck_layer("AttentionBlock case " + std::to_string(i), a, p, c.x,
                                   70 + static_cast<std::uint64_t>(i), 0.7);
    ++i;
    CHECK(r.worst < 1e-6);
  }
}

TEST_CASE("AttentionBlock: shape errors", "[nn]") {
  Parameters<double> p;
  Attn a(p, "down_blocks.1.attentions.0", {.channels = 4, .norm_groups = 2});
  Tensor<double> x({1, 3, 2, 2});
  CHECK_THROWS_WITH(a.forward(x.view()), Catch::Contains("down_blocks.1.attentions.0") &&
                                             Catch::Contains("[N, 4, H, W]") && Catch::Contains("[1, 3, 2, 2]"));
  nn::AttentionOptions bad{.channels = 4, .head_dim = 8};
  CHECK_THROWS_AS(Attn(p, "bad", bad), Error);
}
