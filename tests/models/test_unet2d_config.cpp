// UNet2DConfig and its config.json reader/writer (io/unet_config_json.hpp).
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include "ddpm/io/unet_config_json.hpp"
#include "ddpm/nn/unet2d_config.hpp"

using namespace ddpm;
using json = nlohmann::json;

namespace {

json small_config() {
  return json::parse(R"({
    "_class_name": "UNet2DModel", "_diffusers_version": "0.40.0",
    "block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 4, "attention_head_dim": null,
    "sample_size": 8, "in_channels": 2, "out_channels": 2, "layers_per_block": 1})");
}

std::string error_of(const json& j) {
  try {
    io::parse_unet2d_config(j, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("UNet2DConfig defaults are diffusers' UNet2DModel defaults", "[models]") {
  const nn::UNet2DConfig c;
  CHECK(c.in_channels == 3);
  CHECK(c.out_channels == 3);
  CHECK(c.attention_head_dim == 8);
  CHECK(c.freq_shift == 0);
  CHECK(c.flip_sin_to_cos);
  CHECK(c.norm_num_groups == 32);
  CHECK(c.norm_eps == 1e-5);
  CHECK(c.block_out_channels == std::vector<int>{224, 448, 672, 896});
  CHECK(c.layers_per_block == 2);
  CHECK(c.downsample_padding == 1);
  CHECK(c.mid_block_type == "UNetMidBlock2D");
  CHECK(c.add_attention);
  CHECK_NOTHROW(c.validate());
  // An empty object is UNet2DModel() with every default.
  const auto d = io::parse_unet2d_config(json::object());
  CHECK(io::unet2d_config_to_json(d) == io::unet2d_config_to_json(c));
}

TEST_CASE("UNet2D config.json: missing keys take defaults, unknown keys are reported", "[models]") {
  json j = small_config();
  j["some_future_key"] = 3;
  std::vector<std::string> ignored;
  const auto c = io::parse_unet2d_config(j, "cfg.json", &ignored);
  CHECK(ignored == std::vector<std::string>{"some_future_key"});
  CHECK(c.sample_size == std::vector<int>{8});
  CHECK(c.attention_head_dim == std::nullopt);
  CHECK(c.freq_shift == 0);
  CHECK(c.norm_eps == 1e-5);
}

TEST_CASE("UNet2D config.json: unsupported values are errors naming file, key, value and the supported set",
          "[models]") {
  struct Bad {
    const char* key;
    json value;
    const char* expect;  // a fragment the message must hold
  };
  const Bad bads[] = {
      {"time_embedding_type", "fourier", "positional"},
      {"down_block_types", json::array({"DownBlock2D", "CrossAttnDownBlock2D"}), "CrossAttnDownBlock2D"},
      {"up_block_types", json::array({"SkipUpBlock2D", "UpBlock2D"}), "AttnUpBlock2D"},
      {"class_embed_type", "timestep", "timestep"},
      {"act_fn", "gelu", "silu"},
      {"resnet_time_scale_shift", "spatial", "scale_shift"},
      {"downsample_type", "resnet", "conv"},
      {"upsample_type", "resnet", "conv"},
      {"mid_block_type", "UNetMidBlock2DCrossAttn", "UNetMidBlock2D"},
      {"in_channels", "3", "integer"},
      {"block_out_channels", json::array({8, "16"}), "list of integers"},
      {"norm_eps", "1e-5", "number"},
      {"center_input_sample", 1, "true or false"},
      {"layers_per_block", 1.5, "integer"},
      {"attention_head_dim", json::array({8}), "integer"},
      {"down_block_types", "DownBlock2D", "list of strings"},
      {"block_out_channels", json::array({8, 16, 32}), "block_out_channels"},
      {"norm_num_groups", 0, "norm_num_groups"},
      {"_class_name", "UNet2DConditionModel", "UNet2DModel"},
  };
  for (const auto& b : bads) {
    json j = small_config();
    j[b.key] = b.value;
    const std::string msg = error_of(j);
    INFO(b.key << " = " << b.value.dump() << " -> " << msg);
    CHECK(msg.find("cfg.json") != std::string::npos);
    CHECK(msg.find(b.key) != std::string::npos);
    CHECK(msg.find(b.expect) != std::string::npos);
  }
  CHECK(error_of(json::array()).find("object") != std::string::npos);
}

TEST_CASE("UNet2D config.json written by the library reads back identically", "[models]") {
  json j = small_config();
  j["mid_block_scale_factor"] = 1.41421356;
  j["num_class_embeds"] = 5;
  j["resnet_time_scale_shift"] = "scale_shift";
  j["sample_size"] = json::array({8, 12});
  const auto c = io::parse_unet2d_config(j);
  const auto dir = std::filesystem::path(DDPM_TEST_TMP_DIR) / "unet2d_config";
  std::filesystem::create_directories(dir);
  io::write_unet2d_config(dir / "config.json", c);
  const auto back = io::read_unet2d_config(dir / "config.json");
  CHECK(io::unet2d_config_to_json(back) == io::unet2d_config_to_json(c));
  CHECK(back.mid_block_scale_factor == 1.41421356);
  CHECK(back.sample_size == std::vector<int>{8, 12});
  // Every key diffusers writes is present.
  const json written = json::parse(io::read_text_file(dir / "config.json"));
  for (auto& k : io::unet_json_detail::unet2d_keys()) CHECK(written.contains(k));
  // An invalid config is refused before anything is written.
  auto bad = c;
  bad.act_fn = "relu";
  CHECK_THROWS_AS(io::write_unet2d_config(dir / "bad.json", bad), Error);
  CHECK(!std::filesystem::exists(dir / "bad.json"));
}
