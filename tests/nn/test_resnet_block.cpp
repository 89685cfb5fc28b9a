#include <catch2/catch.hpp>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/resnet_block.hpp"
#include "support/gradcheck.hpp"

using namespace ddpm;
using Res = nn::ResnetBlock2D<double, backend::Reference>;

TEST_CASE("ResnetBlock2D: names and shapes", "[nn]") {
  Parameters<double> p;
  Res r(p, "down_blocks.0.resnets.0", {.in_channels = 4, .out_channels = 6, .temb_channels = 8, .groups = 2});
  const std::string pre = "down_blocks.0.resnets.0.";
  CHECK(p.info(p.id(pre + "norm1.weight")).shape == Shape{4});
  CHECK(p.info(p.id(pre + "conv1.weight")).shape == Shape{6, 4, 3, 3});
  CHECK(p.info(p.id(pre + "time_emb_proj.weight")).shape == Shape{6, 8});
  CHECK(p.info(p.id(pre + "norm2.bias")).shape == Shape{6});
  CHECK(p.info(p.id(pre + "conv2.weight")).shape == Shape{6, 6, 3, 3});
  CHECK(p.info(p.id(pre + "conv_shortcut.weight")).shape == Shape{6, 4, 1, 1});
  CHECK(p.contains(pre + "conv_shortcut.bias"));
  Parameters<double> q;
  Res s(q, "r", {.in_channels = 4, .temb_channels = 8, .groups = 2,
                 .time_embedding_norm = nn::TimeEmbeddingNorm::ScaleShift});
  CHECK(q.info(q.id("r.time_emb_proj.weight")).shape == Shape{8, 8});
  CHECK_FALSE(q.contains("r.conv_shortcut.weight"));
  Parameters<double> u;
  Res n(u, "r", {.in_channels = 4, .temb_channels = 0, .groups = 2});
  CHECK_FALSE(u.contains("r.time_emb_proj.weight"));
}

TEST_CASE("ResnetBlock2D: with conv2 zeroed the output is shortcut(x) / output_scale_factor", "[nn]") {
  Parameters<double> p;
  Res r(p, "r", {.in_channels = 4, .temb_channels = 3, .groups = 2, .output_scale_factor = 2.0});
  Rng rng(5);
  rng.fill_normal(p.values());
  std::fill(p.value(p.id("r.conv2.weight")).begin(), p.value(p.id("r.conv2.weight")).end(), 0.0);
  std::fill(p.value(p.id("r.conv2.bias")).begin(), p.value(p.id("r.conv2.bias")).end(), 0.0);
  Tensor<double> x({2, 4, 3, 3}), t({2, 3});
  test::randomize(x.view(), rng);
  test::randomize(t.view(), rng);
  auto y = r.forward(x.view(), t.view());
  for (index_t i = 0; i < x.numel(); ++i) CHECK(y[i] == Approx(x[i] / 2).epsilon(1e-15));
}

TEST_CASE("ResnetBlock2D: gradients match finite differences", "[nn][gradcheck]") {
  struct Case {
    nn::ResnetBlock2DOptions opt;
    Shape x;
    bool temb;
  };
  const auto SS = nn::TimeEmbeddingNorm::ScaleShift;
  const Case cases[] = {
      {{.in_channels = 4, .out_channels = 4, .temb_channels = 5, .groups = 2}, {2, 4, 3, 3}, true},
      {{.in_channels = 3, .out_channels = 6, .temb_channels = 4, .groups = 3, .output_scale_factor = 1.5},
       {1, 3, 3, 2},
       true},
      {{.in_channels = 6, .out_channels = 3, .temb_channels = 2, .groups = 3, .time_embedding_norm = SS},
       {2, 6, 1, 3},
       true},
      {{.in_channels = 4, .out_channels = 4, .temb_channels = 3, .groups = 2, .groups_out = 4, .eps = 1e-5,
        .time_embedding_norm = SS, .output_scale_factor = 2.0},
       {1, 4, 3, 3},
       true},
      {{.in_channels = 2, .out_channels = 4, .temb_channels = 0, .groups = 1}, {1, 2, 3, 3}, false},
      {{.in_channels = 4, .out_channels = 4, .temb_channels = 3, .groups = 2, .use_in_shortcut = true,
        .conv_shortcut_bias = false},
       {1, 4, 2, 2},
       true},
  };
  int i = 0;
  for (const auto& c : cases) {
    Parameters<double> p;
    Res r(p, "res", c.opt);
    Rng rng(90 + static_cast<std::uint64_t>(i));
    rng.fill_normal(p.values(), 0.0, 0.6);
    Tensor<double> x(c.x), t({c.x[0], std::max<index_t>(c.opt.temb_channels, 1)});
    test::randomize(x.view(), rng);
    test::randomize(t.view(), rng);
    const ConstTensorView<double> tv = c.temb ? ConstTensorView<double>(t.view()) : ConstTensorView<double>{};
    ConstTensorView<double> dx;
    std::vector<test::GradInput> inputs{{"x", x.view(), [&] { return dx; }}};
    if (c.temb) inputs.push_back({"temb", t.view(), [&] { return r.temb_grad(); }});
    auto res = test::gradcheck(
        "ResnetBlock2D case " + std::to_string(i++) + " x" + c.x.str(), [&] { return r.forward(x.view(), tv); },
        [&](ConstTensorView<double> dy) { dx = r.backward(dy); }, inputs, &p);
    CHECK(res.worst < 1e-6);
  }
}

// Inference routes the intermediate results through the shared workspace
// (nn/workspace.hpp); training keeps them per layer. Same ops, same order:
// identical outputs, also when blocks of different shapes take turns on the
// workspace slots (growing and shrinking them) and backward runs in between.
TEST_CASE("ResnetBlock2D: inference through the workspace equals training", "[nn]") {
  const auto SS = nn::TimeEmbeddingNorm::ScaleShift;
  Parameters<double> p;
  Res a(p, "a", {.in_channels = 4, .out_channels = 6, .temb_channels = 3, .groups = 2});
  Res b(p, "b", {.in_channels = 6, .out_channels = 2, .temb_channels = 3, .groups = 2, .time_embedding_norm = SS});
  Res c(p, "c", {.in_channels = 2, .temb_channels = 0, .groups = 1, .output_scale_factor = 2.0});
  Rng rng(7);
  rng.fill_normal(p.values(), 0.0, 0.5);
  Tensor<double> x({2, 4, 5, 3}), t({2, 3});
  test::randomize(x.view(), rng);
  test::randomize(t.view(), rng);
  auto run = [&](nn::Mode m) {
    for (Res* r : {&a, &b, &c}) r->set_mode(m);
    const auto ya = a.forward(x.view(), t.view());
    const auto yb = b.forward(ya, t.view());
    const auto yc = c.forward(yb, {});
    if (m == nn::Mode::Training) {  // backward in between uses the same slots
      Tensor<double> dy(yc.shape());
      dy.fill(1.0);
      a.backward(b.backward(c.backward(dy.view())));
    }
    return std::vector<double>(yc.begin(), yc.end());
  };
  const auto train = run(nn::Mode::Training);
  const auto infer = run(nn::Mode::Inference);
  const auto train2 = run(nn::Mode::Training);
  REQUIRE(infer.size() == train.size());
  CHECK(infer == train);
  CHECK(train2 == train);
}

// forward's `out`: in inference the result goes there (the same values as
// the block's own buffer); in training backward needs the block's buffer, so
// an output view is refused.
TEST_CASE("ResnetBlock2D: an output view in inference", "[nn]") {
  Parameters<double> p;
  Res r(p, "r", {.in_channels = 4, .out_channels = 6, .temb_channels = 0, .groups = 2});
  Rng rng(5);
  rng.fill_normal(p.values(), 0.0, 0.5);
  Tensor<double> x({2, 4, 3, 5}), out({2, 6, 3, 5});
  test::randomize(x.view(), rng);
  r.set_mode(nn::Mode::Inference);
  const auto own = r.forward(x.view());
  const std::vector<double> expected(own.begin(), own.end());
  const auto y = r.forward(x.view(), {}, out.view());
  CHECK(y.data() == out.data());
  CHECK(std::vector<double>(out.begin(), out.end()) == expected);
  Tensor<double> wrong({2, 6, 3, 4});
  CHECK_THROWS_WITH(r.forward(x.view(), {}, wrong.view()), Catch::Contains("output buffer"));
  r.set_mode(nn::Mode::Training);
  CHECK_THROWS_WITH(r.forward(x.view(), {}, out.view()), Catch::Contains("inference only"));
}

TEST_CASE("ResnetBlock2D: shape errors", "[nn]") {
  Parameters<double> p;
  Res r(p, "up_blocks.0.resnets.1", {.in_channels = 4, .temb_channels = 3, .groups = 2});
  Tensor<double> x({1, 4, 2, 2}), t({1, 5}), xb({1, 5, 2, 2});
  CHECK_THROWS_WITH(r.forward(x.view(), t.view()),
                    Catch::Contains("up_blocks.0.resnets.1") && Catch::Contains("temb") && Catch::Contains("[1, 3]"));
  CHECK_THROWS_WITH(r.forward(xb.view()), Catch::Contains("up_blocks.0.resnets.1") && Catch::Contains("[N, 4, H, W]"));
}
