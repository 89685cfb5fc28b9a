// UNet2D: end-to-end gradient check in double on tiny configs, input checks,
// and diffusers model folders (io/diffusers.hpp).
#include <catch2/catch.hpp>

#include <bit>
#include <cstdint>
#include <filesystem>

#include "ddpm/backend/reference.hpp"
#include "ddpm/io/diffusers.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "support/gradcheck.hpp"
#include "support/tiny_unet.hpp"

using namespace ddpm;
using UNet = nn::UNet2D<double, backend::Reference>;
namespace fs = std::filesystem;

namespace {

nn::UNet2DConfig tiny(bool scale_shift, bool classes) {
  nn::UNet2DConfig c = ddpm::test::tiny_unet_layout();
  c.center_input_sample = scale_shift;
  c.resnet_time_scale_shift = scale_shift ? "scale_shift" : "default";
  c.mid_block_scale_factor = scale_shift ? 1.0 : 0.7;
  c.downsample_padding = scale_shift ? 1 : 0;
  if (classes) c.num_class_embeds = 3;
  c.sample_size = {4};
  return c;
}

// FNV-1a over the bits of every value: any change of a single weight changes it.
std::uint64_t bit_hash(std::span<const float> values) {
  std::uint64_t h = 14695981039346656037ull;
  for (float v : values) {
    const auto bits = std::bit_cast<std::uint32_t>(v);
    for (int i = 0; i < 4; ++i) h = (h ^ ((bits >> (8 * i)) & 0xffu)) * 1099511628211ull;
  }
  return h;
}

}  // namespace

TEST_CASE("UNet2D gradients match central differences (double)", "[models]") {
  for (bool ss : {false, true}) {
    UNet net(tiny(ss, ss), nn::Numerics::Exact);
    Rng rng(3, 4);
    net.init(rng);
    // Make the GroupNorm affine parameters non-trivial.
    for (auto& v : net.parameters().values()) v += 0.05 * rng.normal();
    Tensor<double> x({2, 2, 4, 4});
    test::randomize(x.view(), rng);
    const std::vector<double> t{3.0, 711.25};
    const std::vector<std::int64_t> labels{2, 0};
    const std::span<const std::int64_t> lab = ss ? std::span<const std::int64_t>(labels) : std::span<const std::int64_t>{};
    ConstTensorView<double> dx;
    test::GradCheckOptions opt;
    opt.max_elements = 6;
    const auto r = test::gradcheck(
        std::string("unet2d ") + (ss ? "scale_shift+classes+center" : "default"),
        [&] { return net.forward(x.view(), std::span<const double>(t), lab); },
        [&](ConstTensorView<double> dy) { dx = net.backward(dy); }, {{"x", x.view(), [&] { return dx; }}},
        &net.parameters(), opt);
    CHECK(r.worst < 1e-6);
  }
}

// init(rng) draws the layers in a fixed order (the random stream it consumes
// is part of the contract: a seed gives the same weights in every version).
// Pinned from the layer-by-layer init of b04a3f6: the hash of every weight's
// bits and a few weights by name (float: the double -> float rounding makes
// these independent of FMA contraction in Rng::uniform).
TEST_CASE("UNet2D init(rng) gives the pinned weights for a seed", "[models]") {
  nn::UNet2D<float, backend::Reference> net(tiny(true, true));
  Rng rng(2024, 7);
  net.init(rng);
  const auto& p = net.parameters();
  const auto at = [&](const std::string& name, index_t i) {
    const auto v = p.value(p.id(name));
    return v[i < 0 ? v.numel() + i : i];
  };
  const struct {
    const char* name;
    index_t index;  // from the end when negative
    float value;
  } probes[] = {
      {"conv_in.weight", 0, -0x1.2831d8p-4f},
      {"time_embedding.linear_1.weight", 5, 0x1.785f76p-3f},
      {"time_embedding.linear_2.bias", -1, -0x1.9f5a98p-3f},
      {"class_embedding.weight", 3, -0x1.88491ep+0f},
      {"down_blocks.0.downsamplers.0.conv.weight", 0, -0x1.20775p-3f},
      {"down_blocks.1.resnets.0.conv_shortcut.weight", 1, -0x1.3d5272p-3f},
      {"down_blocks.1.attentions.0.to_q.weight", 0, 0x1.20614ep-3f},
      {"up_blocks.0.attentions.1.to_out.0.bias", -1, -0x1.94c74p-3f},
      {"up_blocks.0.resnets.1.time_emb_proj.weight", 2, 0x1.64882p-4f},
      {"up_blocks.0.upsamplers.0.conv.bias", 0, 0x1.cc1f4p-4f},
      {"mid_block.attentions.0.to_v.weight", 4, -0x1.2bd5d8p-2f},
      {"mid_block.resnets.1.conv2.weight", -1, -0x1.79a72p-5f},
      {"conv_out.bias", -1, 0x1.4ca094p-8f},
  };
  for (const auto& probe : probes) {
    INFO(probe.name << "[" << probe.index << "]");
    CHECK(at(probe.name, probe.index) == probe.value);
  }
  CHECK(p.numel() == 12610);
  CHECK(bit_hash(p.values()) == 0x09ca62c980307cd8ull);
}

TEST_CASE("UNet2D records intermediates only when asked", "[models]") {
  UNet net(tiny(true, true));
  Rng rng(1, 2);
  net.init(rng);
  Tensor<double> x({2, 2, 4, 4}, 0.25);
  const std::vector<double> t{3, 400};
  const std::vector<std::int64_t> labels{1, 2};
  CHECK(!net.records_intermediates());
  const auto y0 = Tensor<double>::copy_of(net.forward(x.view(), std::span<const double>(t), labels));
  CHECK_THROWS_WITH(net.intermediates(), Catch::Contains("record_intermediates(true)"));
  net.record_intermediates(true);
  const auto y1 = net.forward(x.view(), std::span<const double>(t), labels);
  CHECK(std::equal(y1.begin(), y1.end(), y0.begin()));  // recording changes nothing
  std::vector<std::string> names;
  for (const auto& [name, view] : net.intermediates()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"class_emb", "conv_in_out", "conv_norm_out.out", "down_blocks.0.out",
                                          "down_blocks.1.out", "mid_block.out", "t_emb", "time_embedding_out",
                                          "up_blocks.0.out", "up_blocks.1.out"});
  CHECK(net.intermediates().at("down_blocks.0.out").shape() == Shape({2, 4, 2, 2}));
  CHECK(net.intermediates().at("t_emb").shape() == Shape({2, 4}));
  net.record_intermediates(false);
  CHECK_THROWS_AS(net.intermediates(), Error);
}

TEST_CASE("UNet2D checks its inputs and config", "[models]") {
  UNet net(tiny(true, true));
  Tensor<double> x({2, 2, 4, 4}), odd({2, 2, 5, 4}), wrong_c({2, 3, 4, 4});
  const std::vector<double> t{1, 2};
  const std::vector<std::int64_t> labels{0, 1}, bad_labels{0, 3};
  CHECK_THROWS_WITH(net.forward(x.view(), std::span<const double>(t)), Catch::Contains("class labels"));
  CHECK_THROWS_AS(net.forward(x.view(), std::span<const double>(t), bad_labels), Error);
  CHECK_THROWS_WITH(net.forward(odd.view(), std::span<const double>(t), labels), Catch::Contains("divisible"));
  CHECK_THROWS_AS(net.forward(wrong_c.view(), std::span<const double>(t), labels), Error);
  CHECK_NOTHROW(net.forward(x.view(), 5.0, labels));  // one timestep for the batch
  static_assert(Denoiser<UNet, double>);
  static_assert(Denoiser<nn::UNet2D<float, backend::Reference>, float>);

  UNet plain(tiny(false, false));
  CHECK_THROWS_WITH(plain.forward(x.view(), std::span<const double>(t), labels), Catch::Contains("no class embedding"));

  auto bad = tiny(false, false);
  bad.norm_num_groups = 3;
  CHECK_THROWS_WITH(UNet(bad), Catch::Contains("norm_num_groups"));
  bad = tiny(false, false);
  bad.attention_head_dim = 3;
  CHECK_THROWS_WITH(UNet(bad), Catch::Contains("attention_head_dim"));
  bad = tiny(false, false);
  bad.dropout = 0.1;
  UNet drop(bad);
  drop.forward(x.view(), std::span<const double>(t));
  Tensor<double> dy({2, 2, 4, 4}, 1.0);
  CHECK_THROWS_WITH(drop.backward(dy.view()), Catch::Contains("dropout"));
}

TEST_CASE("UNet2D without mid block and with time_embedding_dim builds and runs", "[models]") {
  auto c = tiny(false, false);
  c.mid_block_type.reset();
  c.time_embedding_dim = 12;
  UNet net(c);
  CHECK(!net.parameters().contains("mid_block.resnets.0.conv1.weight"));
  CHECK(net.parameters().info(net.parameters().id("time_embedding.linear_2.weight")).shape == Shape({12, 12}));
  Tensor<double> x({1, 2, 4, 4}, 0.5);
  CHECK(net.forward(x.view(), 10.0).shape() == Shape({1, 2, 4, 4}));
}

TEST_CASE("diffusers folders: save, load, and all-or-nothing failures", "[models]") {
  const fs::path dir = fs::path(DDPM_TEST_TMP_DIR) / "unet2d_folder";
  fs::remove_all(dir);
  UNet net(tiny(true, true));
  Rng rng(9, 9);
  net.init(rng);
  io::save_unet2d(net, dir);
  CHECK(fs::exists(dir / "config.json"));
  CHECK(fs::exists(dir / "diffusion_pytorch_model.safetensors"));
  auto back = io::load_unet2d<double, backend::Reference>(dir);
  CHECK(std::equal(back.parameters().values().begin(), back.parameters().values().end(),
                   net.parameters().values().begin()));
  // A float model from the double file, and a pipeline folder (unet/ subfolder).
  fs::create_directories(dir / "pipe");
  io::save_unet2d(net, dir / "pipe" / "unet");
  auto f = io::load_unet2d<float, backend::Reference>(dir / "pipe");
  CHECK(f.num_parameters() == net.num_parameters());

  // Weights of another config: one error listing the problems; the model is unchanged.
  auto other_cfg = tiny(false, false);
  other_cfg.block_out_channels = {4, 4};
  UNet other(other_cfg);
  const fs::path odir = dir / "other";
  io::save_unet2d(other, odir);
  const std::vector<double> before(net.parameters().values().begin(), net.parameters().values().end());
  try {
    io::load_unet2d_weights(net, odir);
    FAIL("expected an error");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("missing") != std::string::npos);      // class_embedding.weight
    CHECK(msg.find("class_embedding.weight") != std::string::npos);
    CHECK(msg.find("wrong shape") != std::string::npos);  // 8 vs 4 channels
    CHECK(msg.find("nothing was loaded") != std::string::npos);
  }
  CHECK(std::equal(before.begin(), before.end(), net.parameters().values().begin()));

  // Formats this library does not read get a clear message.
  const fs::path bin = dir / "bin";
  fs::create_directories(bin);
  io::write_unet2d_config(bin / "config.json", net.config());
  io::write_text_file(bin / "diffusion_pytorch_model.bin", "pickle");
  const auto load = [](const fs::path& p) { return io::load_unet2d<double, backend::Reference>(p); };
  CHECK_THROWS_WITH(load(bin), Catch::Contains("safetensors"));
  CHECK_THROWS_WITH(load(dir / "nope"), Catch::Contains("not a folder"));
}
