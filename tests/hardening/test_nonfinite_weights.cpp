// A model file with a NaN or infinite weight would sample NaN images without
// a word; loading refuses it with one line naming the file, the tensor and
// the element, and changes nothing. StateDictLoadOptions::allow_non_finite
// lets such a file load.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/io/diffusers.hpp"
#include "ddpm/io/mlp_denoiser.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/io/state_dict.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "support/show_error.hpp"

using namespace ddpm;
namespace fs = std::filesystem;

namespace {

fs::path dir() {
  const auto d = fs::path(DDPM_TEST_TMP_DIR) / "hardening_nonfinite";
  fs::create_directories(d);
  return d;
}

nn::UNet2DConfig small_unet() {
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
  return c;
}

// Rewrites the safetensors file `path` with element `index` of `tensor` set to `value`.
void poison(const fs::path& path, const std::string& tensor, std::size_t index, float value) {
  const auto st = io::SafeTensors::load(path);
  io::SafeTensorsWriter w;
  for (const auto& [k, v] : st.metadata()) w.set_metadata(k, v);
  for (const auto& name : st.names()) {
    auto t = st.get<float>(name);
    if (name == tensor) t.data()[index] = value;
    w.add(name, t);
  }
  w.save(path);
}

using UNet = nn::UNet2D<float, backend::Reference>;

}  // namespace

TEST_CASE("a model folder with a NaN weight is refused by tensor name", "[hardening][nonfinite]") {
  const auto folder = dir() / "unet_nan";
  UNet saved(small_unet());
  Rng rng(1);
  saved.init(rng);
  io::save_unet2d(saved, folder);
  poison(folder / io::kDiffusersWeightsFile, "conv_in.weight", 17, std::numeric_limits<float>::quiet_NaN());

  test::error_of([&] { io::load_unet2d<float, backend::Reference>(folder); },
                 {"diffusion_pytorch_model.safetensors: conv_in.weight: non-finite value (nan) at element 17",
                  "allow_non_finite"});

  // Into an existing model: refused, and the model keeps its weights.
  UNet other(small_unet());
  Rng rng2(2);
  other.init(rng2);
  const auto values = other.parameters().values();
  const std::vector<float> before(values.begin(), values.end());
  test::error_of([&] { io::load_unet2d_weights(other, folder); }, {"conv_in.weight: non-finite value (nan)"});
  CHECK(std::equal(before.begin(), before.end(), values.begin()));

  // The option lets it load, NaN and all; every other weight is the saved one.
  io::DiffusersLoadOptions allow;
  allow.state_dict.allow_non_finite = true;
  const auto loaded = io::load_unet2d<float, backend::Reference>(folder, allow);
  const auto& p = loaded.parameters();
  const auto w = p.value(p.id("conv_in.weight"));
  CHECK(std::isnan(w[17]));
  const auto& ps = saved.parameters();
  const auto ws = ps.value(ps.id("conv_in.weight"));
  for (index_t i = 0; i < w.numel(); ++i)
    if (i != 17) CHECK(w[i] == ws[i]);
}

TEST_CASE("infinite weights are refused with their sign, in any tensor", "[hardening][nonfinite]") {
  const auto folder = dir() / "unet_inf";
  UNet saved(small_unet());
  Rng rng(3);
  saved.init(rng);
  io::save_unet2d(saved, folder);
  const auto file = folder / io::kDiffusersWeightsFile;
  const std::string last = saved.parameters().infos().back().name;
  poison(file, last, 0, -std::numeric_limits<float>::infinity());
  test::error_of([&] { io::load_unet2d<float, backend::Reference>(folder); },
                 {file.string() + ": " + last + ": non-finite value (-inf) at element 0"});
  poison(file, last, 0, std::numeric_limits<float>::infinity());
  test::error_of([&] { io::load_unet2d<float, backend::Reference>(folder); },
                 {last + ": non-finite value (inf) at element 0"});

  // A state dict loaded directly: the same check, the same option.
  UNet model(small_unet());
  const auto st = io::SafeTensors::load(file);
  test::error_of([&] { io::load_state_dict(model.parameters(), st); }, {last + ": non-finite value (inf)"});
  io::StateDictLoadOptions allow;
  allow.allow_non_finite = true;
  io::load_state_dict(model.parameters(), st, allow);
  const auto& p = model.parameters();
  CHECK(std::isinf(p.value(p.id(last))[0]));
}

TEST_CASE("a double model with a weight too large for float is refused when loaded as float", "[hardening][nonfinite]") {
  // Conversion to the model's scalar type overflows to inf: checked after conversion.
  const auto file = dir() / "too_large.safetensors";
  Parameters<double> big;
  big.add("w", {3});
  big.values()[1] = 1e300;
  io::state_dict_writer(big).save(file);
  Parameters<float> small;
  small.add("w", {3});
  test::error_of([&] { io::load_state_dict(small, io::SafeTensors::load(file)); },
                 {"too_large.safetensors: w: non-finite value (inf) at element 1"});
  Parameters<double> same;
  same.add("w", {3});
  io::load_state_dict(same, io::SafeTensors::load(file));
  CHECK(same.values()[1] == 1e300);
}
