// config.json and model folders of AutoencoderKL and VQModel
// (io/autoencoder_config_json.hpp, io/autoencoder.hpp): diffusers' own files
// round-trip unchanged, bad keys and values are one-line errors naming file,
// key and value, folders save and load (also as pipeline subfolders), and a
// failed load changes nothing.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "ddpm/backend/reference.hpp"
#include "ddpm/io/autoencoder.hpp"
#include "support/gradcheck.hpp"

using namespace ddpm;
namespace fs = std::filesystem;
using R = backend::Reference;
using json = nlohmann::json;

namespace {

const fs::path kData = fs::path(DDPM_SOURCE_DIR) / "tests/data/golden-more/autoencoder";

json read_json(const fs::path& p) { return json::parse(io::read_text_file(p)); }

fs::path tmp(const std::string& name) {
  const fs::path d = fs::path(DDPM_TEST_TMP_DIR) / ("autoencoder_io_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// The message of the ddpm::Error f throws ("" when it does not throw).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

nn::AutoencoderKLConfig tiny_kl() {
  nn::AutoencoderKLConfig c;
  c.block_out_channels = {4, 8};
  c.down_block_types = {"DownEncoderBlock2D", "DownEncoderBlock2D"};
  c.up_block_types = {"UpDecoderBlock2D", "UpDecoderBlock2D"};
  c.latent_channels = 2;
  c.norm_num_groups = 2;
  c.shift_factor = 0.125;
  return c;
}

}  // namespace

TEST_CASE("autoencoder config.json: diffusers' files round-trip unchanged", "[io]") {
  for (const char* name : {"kl_tiny_rgb", "kl_mnist_like"}) {
    const json j = read_json(kData / name / "config.json");
    const auto c = io::read_autoencoder_kl_config(kData / name / "config.json");
    INFO(name);
    CHECK(io::autoencoder_kl_config_to_json(c) == j);
  }
  const json j = read_json(kData / "vq_tiny/config.json");
  const auto c = io::read_vq_model_config(kData / "vq_tiny/config.json");
  CHECK(c.num_vq_embeddings == 16);
  CHECK(c.embed_dim() == 3);
  CHECK(io::vq_model_config_to_json(c) == j);
  CHECK(io::read_model_class(kData / "vq_tiny/config.json") == "VQModel");
  // An old file (no newer keys) takes the class defaults.
  const auto old = io::read_autoencoder_kl_config(kData / "published/stabilityai_sd-vae-ft-mse/config.json");
  CHECK(old.scaling_factor == 0.18215);
  CHECK(old.use_quant_conv);
  CHECK(old.force_upcast);
  CHECK_FALSE(old.shift_factor.has_value());
  // Written and read back.
  const fs::path d = tmp("config");
  auto k = tiny_kl();
  k.latents_mean = std::vector<double>{0.5, -0.25};
  k.sample_size = {32, 48};
  io::write_autoencoder_kl_config(d / "config.json", k);
  const auto back = io::read_autoencoder_kl_config(d / "config.json");
  CHECK(io::autoencoder_kl_config_to_json(back) == io::autoencoder_kl_config_to_json(k));
  CHECK(back.shift_factor == 0.125);
  CHECK(back.latents_mean == k.latents_mean);
}

TEST_CASE("autoencoder config.json: bad keys and values are one-line errors naming file, key and value", "[io]") {
  const json base = read_json(kData / "kl_tiny_rgb/config.json");
  struct Bad {
    const char* key;
    json value;
    const char* expect;  // part of the message
  };
  const Bad bad[] = {
      {"block_out_channels", json::array({8, 15}), "15"},
      {"down_block_types", json::array({"DownEncoderBlock2D", "AttnDownEncoderBlock2D"}), "AttnDownEncoderBlock2D"},
      {"up_block_types", json::array({"UpDecoderBlock2D"}), "up_block_types"},
      {"act_fn", "gelu", "\"gelu\""},
      {"latent_channels", 0, "latent_channels = 0"},
      {"layers_per_block", "two", "\"two\""},
      {"use_quant_conv", 1, "use_quant_conv"},
      {"shift_factor", "x", "shift_factor"},
      {"latents_mean", json::array({1, "a"}), "latents_mean"},
      {"sample_size", json::array({1, 2, 3}), "sample_size"},
      {"num_vq_embeddings", 16, "not a key of diffusers' AutoencoderKL"},
      {"_class_name", "VQModel", "_class_name"},
      {"norm_num_groups", 3, "norm_num_groups = 3"},
  };
  for (const auto& b : bad) {
    json j = base;
    j[b.key] = b.value;
    const std::string msg = error_of([&] { io::parse_autoencoder_kl_config(j, "vae/config.json"); });
    INFO(b.key << ": " << msg);
    CHECK(msg.rfind("vae/config.json: ", 0) == 0);
    CHECK(msg.find(b.expect) != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  }
  json v = read_json(kData / "vq_tiny/config.json");
  for (const auto& [key, value] : {std::pair<const char*, json>{"norm_type", "spatial"},
                                   {"lookup_from_codebook", true},
                                   {"vq_embed_dim", -1},
                                   {"use_quant_conv", true}}) {
    json j = v;
    j[key] = value;
    const std::string msg = error_of([&] { io::parse_vq_model_config(j, "vqvae/config.json"); });
    INFO(key << ": " << msg);
    CHECK(msg.rfind("vqvae/config.json: ", 0) == 0);
    CHECK(msg.find(key) != std::string::npos);
  }
  CHECK(error_of([] { io::parse_autoencoder_kl_config(json::array(), "c.json"); }).find("JSON object") !=
        std::string::npos);
}

TEST_CASE("autoencoder folders: save, load (also from a pipeline folder), all or nothing", "[io]") {
  const fs::path d = tmp("folders");
  nn::AutoencoderKL<double, R> m(tiny_kl());
  Rng rng(9);
  m.init(rng);
  io::save_autoencoder_kl(m, d / "pipe/vae");
  auto back = io::load_autoencoder_kl<double, R>(d / "pipe");  // finds vae/
  REQUIRE(back.parameters().numel() == m.parameters().numel());
  CHECK(std::equal(m.parameters().values().begin(), m.parameters().values().end(),
                   back.parameters().values().begin()));
  CHECK(back.config().shift_factor == 0.125);
  m.set_mode(nn::Mode::Inference);
  back.set_mode(nn::Mode::Inference);
  Tensor<double> x({1, 3, 8, 8});
  test::randomize(x.view(), rng);
  const Tensor<double> y1 = Tensor<double>::copy_of(m.forward(x.view()));
  const auto y2 = back.forward(x.view());
  CHECK(std::equal(y1.begin(), y1.end(), y2.begin()));

  // The wrong class for the folder, a missing folder, missing weights.
  CHECK(error_of([&] { io::load_vq_model<double, R>(d / "pipe/vae"); }).find("_class_name") != std::string::npos);
  CHECK(error_of([&] { io::load_vq_model<double, R>(d / "pipe"); }).find("vqvae/config.json") != std::string::npos);
  fs::create_directories(d / "noweights");
  fs::copy_file(d / "pipe/vae/config.json", d / "noweights/config.json");
  CHECK(error_of([&] { io::load_autoencoder_kl<double, R>(d / "noweights"); })
            .find("diffusion_pytorch_model.safetensors") != std::string::npos);

  // Weights of another layout: nothing loaded, the model unchanged.
  auto other = tiny_kl();
  other.block_out_channels = {4, 6};
  nn::AutoencoderKL<double, R> o(other);
  io::save_autoencoder_kl(o, d / "other");
  const std::vector<double> before(back.parameters().values().begin(), back.parameters().values().end());
  const std::string msg = error_of([&] { io::load_autoencoder_weights(back, d / "other"); });
  CHECK(msg.find("nothing was loaded") != std::string::npos);
  CHECK(std::equal(before.begin(), before.end(), back.parameters().values().begin()));

  // VQModel, float.
  nn::VQModelConfig vc;
  vc.block_out_channels = {4};
  vc.norm_num_groups = 2;
  vc.num_vq_embeddings = 7;
  nn::VQModel<float, R> vq(vc);
  vq.init(rng);
  io::save_vq_model(vq, d / "vqpipe/vqvae");
  auto vq2 = io::load_vq_model<float, R>(d / "vqpipe");
  CHECK(std::equal(vq.parameters().values().begin(), vq.parameters().values().end(),
                   vq2.parameters().values().begin()));
  CHECK(vq2.config().num_vq_embeddings == 7);
}
