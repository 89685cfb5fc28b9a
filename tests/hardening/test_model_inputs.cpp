// Bad input to a model built from a config: images of the wrong size or
// channel count, class labels out of range or of the wrong count. Each is a
// one-line ddpm::Error naming what was given and what was expected.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "support/show_error.hpp"

using namespace ddpm;

namespace {
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> fragments) {
  test::error_of(std::forward<F>(f), fragments);
}
}  // namespace

TEST_CASE("UNet2D refuses images of the wrong size and labels out of range", "[hardening][model]") {
  nn::UNet2DConfig c;
  c.sample_size = {8};
  c.in_channels = 1;
  c.out_channels = 1;
  c.block_out_channels = {4, 8};
  c.down_block_types = {"DownBlock2D", "DownBlock2D"};
  c.up_block_types = {"UpBlock2D", "UpBlock2D"};
  c.layers_per_block = 1;
  c.norm_num_groups = 2;
  c.attention_head_dim = std::nullopt;
  c.num_class_embeds = 3;
  nn::UNet2D<float, backend::Reference> unet(c);
  Rng rng(1);
  unet.init(rng);
  const std::vector<std::int64_t> one{1};
  // A good call works.
  CHECK(unet.forward(Tensor<float>({1, 1, 8, 8}, 0.1f).cview(), 10.0, one).shape() == Shape{1, 1, 8, 8});
  expect_error([&] { unet.forward(Tensor<float>({1, 1, 7, 8}, 0.f).cview(), 10.0, one); },
               {"UNet2D", "height and width (7 x 8) must be divisible by 2"});
  expect_error([&] { unet.forward(Tensor<float>({1, 3, 8, 8}, 0.f).cview(), 10.0, one); },
               {"UNet2D", "expected x [N, 1, H, W], got [1, 3, 8, 8]"});
  expect_error([&] { unet.forward(Tensor<float>({8, 8}, 0.f).cview(), 10.0, one); }, {"UNet2D", "expected x [N, 1, H, W]"});
  for (std::int64_t bad : {std::int64_t{3}, std::int64_t{-1}, std::int64_t{1} << 40}) {
    const std::vector<std::int64_t> labels{bad};
    expect_error([&] { unet.forward(Tensor<float>({1, 1, 8, 8}, 0.f).cview(), 10.0, labels); },
                 {"label " + std::to_string(bad), "outside [0, 3)"});
  }
  const std::vector<std::int64_t> two{0, 1};
  expect_error([&] { unet.forward(Tensor<float>({1, 1, 8, 8}, 0.f).cview(), 10.0, two); },
               {"UNet2D", "needs 1 class labels, got 2"});
  expect_error([&] { unet.forward(Tensor<float>({1, 1, 8, 8}, 0.f).cview(), 10.0, {}); },
               {"UNet2D", "needs 1 class labels, got 0"});
}
