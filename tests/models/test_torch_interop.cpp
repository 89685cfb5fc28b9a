// The C++ half of tests/models/torch_roundtrip.py (PyTorch <-> ddpm model
// folders). Without DDPM_TORCH_ROUNDTRIP_DIR these cases do nothing: the
// Python script sets it and runs them by name.
//
//   "torch interop: export"  writes <dir>/cpp/{config.json, diffusion_pytorch_model.safetensors,
//                            io.safetensors (sample, timestep, class_labels, output)}
//   "torch interop: import"  reads <dir>/torch/ (written by PyTorch) and checks
//                            ddpm's output against io.safetensors' output
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>

#include "ddpm/backend/reference.hpp"
#include "ddpm/io/diffusers.hpp"
#include "ddpm/nn/unet2d.hpp"

using namespace ddpm;
namespace fs = std::filesystem;
using UNet = nn::UNet2D<float, backend::Reference>;

namespace {

std::optional<fs::path> roundtrip_dir() {
  const char* d = std::getenv("DDPM_TORCH_ROUNDTRIP_DIR");
  if (!d || !*d) return std::nullopt;
  return fs::path(d);
}

std::vector<nn::UNet2DConfig> configs() {
  nn::UNet2DConfig a;  // google/ddpm-like: flip false, shift 1, pad 0, legacy-style attention
  a.in_channels = 3;
  a.out_channels = 3;
  a.block_out_channels = {8, 16, 16};
  a.down_block_types = {"DownBlock2D", "AttnDownBlock2D", "DownBlock2D"};
  a.up_block_types = {"UpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
  a.layers_per_block = 2;
  a.norm_num_groups = 4;
  a.attention_head_dim.reset();
  a.flip_sin_to_cos = false;
  a.freq_shift = 1;
  a.downsample_padding = 0;
  a.norm_eps = 1e-6;
  a.sample_size = {8};
  nn::UNet2DConfig b;  // class-conditional, scale_shift, multi-head, centred input
  b.in_channels = 1;
  b.out_channels = 2;
  b.block_out_channels = {8, 16};
  b.down_block_types = {"AttnDownBlock2D", "DownBlock2D"};
  b.up_block_types = {"UpBlock2D", "AttnUpBlock2D"};
  b.layers_per_block = 1;
  b.norm_num_groups = 2;
  b.attention_head_dim = 4;
  b.resnet_time_scale_shift = "scale_shift";
  b.center_input_sample = true;
  b.mid_block_scale_factor = 1.5;
  b.num_class_embeds = 5;
  b.sample_size = {8};
  return {a, b};
}

}  // namespace

TEST_CASE("torch interop: export", "[.][models][torch]") {  // hidden: run by torch_roundtrip.py
  const auto root = roundtrip_dir();
  REQUIRE(root.has_value());
  int k = 0;
  for (const auto& cfg : configs()) {
    const fs::path dir = *root / "cpp" / std::to_string(k++);
    UNet net(cfg);
    Rng rng(100 + static_cast<std::uint64_t>(k), 1);
    net.init(rng);
    // Non-trivial GroupNorm affine parameters (PyTorch's init is 1 / 0).
    for (const auto& p : net.parameters().infos())
      if (p.name.find("norm") != std::string::npos)
        for (auto& v : net.parameters().value(net.parameters().id(p.name))) v += 0.2f * static_cast<float>(rng.normal());
    io::save_unet2d(net, dir);
    Tensor<float> x({2, cfg.in_channels, 8, 8});
    rng.fill_normal(x.span());
    const std::vector<double> t{999.0, 37.5};
    std::vector<std::int64_t> labels;
    if (cfg.num_class_embeds) labels = {4, 1};
    net.set_mode(nn::Mode::Inference);
    const auto y = net.forward(x.view(), std::span<const double>(t), labels);
    io::SafeTensorsWriter w;
    w.add("sample", x);
    w.add("timestep", t.data(), std::vector<index_t>{2});
    if (!labels.empty()) w.add_int64("class_labels", labels);
    w.add("output", y);
    w.save(dir / "io.safetensors");
  }
}

TEST_CASE("torch interop: import", "[.][models][torch]") {  // hidden: run by torch_roundtrip.py
  const auto root = roundtrip_dir();
  REQUIRE(root.has_value());
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(*root / "torch")) {
    const fs::path dir = entry.path();
    INFO("model folder " << dir);
    auto net = io::load_unet2d<float, backend::Reference>(dir);
    net.set_mode(nn::Mode::Inference);
    const auto st = io::SafeTensors::load(dir / "io.safetensors");
    const auto x = st.get<float>("sample");
    const auto tt = st.get<double>("timestep");
    const std::vector<double> t(tt.begin(), tt.end());
    std::vector<std::int64_t> labels;
    if (st.contains("class_labels")) labels = st.get_int64("class_labels");
    const auto y = net.forward(x.view(), std::span<const double>(t), labels);
    const auto ref = st.get<float>("output");
    REQUIRE(y.shape() == ref.shape());
    double mx = 0, err = 0;
    for (index_t i = 0; i < ref.numel(); ++i) {
      mx = std::max(mx, std::abs(static_cast<double>(ref[i])));
      err = std::max(err, std::abs(static_cast<double>(y[i]) - ref[i]));
    }
    std::printf("torch -> ddpm %s: max |ddpm - torch| = %.3g (max |torch| = %.3g)\n", dir.filename().c_str(), err, mx);
    CHECK(err <= 1e-4 * std::max(mx, 1.0));
    ++checked;
  }
  CHECK(checked > 0);
}
