// Smoke test of latent_diffusion's code paths (examples/latent) on a tiny
// synthetic digit set the test writes itself: train-autoencoder (the latent
// scale in the saved config), train (the U-Net folder and scheduler
// config), sampling with guidance, the trajectory, and the scale/shift
// convention of encode/decode against the model's own encode and decode.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "../../examples/latent/generate.hpp"
#include "../../examples/latent/train.hpp"
#include "ddpm/io/idx.hpp"
#include "synthetic_digits.hpp"

namespace fs = std::filesystem;
using ddpm::index_t;

using examples_test::write_synthetic;

TEST_CASE("latent example: train-autoencoder, train, sample, trajectory", "[examples][latent]") {
  ddpm::backend::Cpu::set_num_threads(1);
  const fs::path root = fs::path(DDPM_TEST_TMP_DIR) / "examples_latent";
  fs::remove_all(root);
  const fs::path data = write_synthetic(root / "data", 40, 20);
  const fs::path out = root / "run";

  latent::AutoencoderTrainOptions ao;
  ao.data = data;
  ao.out = out;
  ao.steps = 3;
  ao.batch = 8;
  ao.width = 8;
  ao.eval_count = 10;
  REQUIRE(latent::train_autoencoder(ao) == 0);
  REQUIRE(fs::exists(out / "vae" / "config.json"));
  CHECK_FALSE(fs::exists(out / "vae.tmp"));
  auto vae = latent::load_vae(out / "vae");
  CHECK(latent::latent_side(vae) == 14);
  CHECK(vae.config().latent_channels == 2);

  // The saved scale is 1 / std and the shift the mean of the raw latents.
  const auto train = mnist::load_split(data, "train");
  const auto batch = train.images.cview().slice(0, 20);
  {
    auto raw = vae.encode(train.images.cview()).mean();  // the 40 digits the scale was measured on
    double s = 0, s2 = 0;
    for (index_t k = 0; k < raw.numel(); ++k) s += raw[k];
    const double mean = s / static_cast<double>(raw.numel());
    for (index_t k = 0; k < raw.numel(); ++k) s2 += (raw[k] - mean) * (raw[k] - mean);
    CHECK(*vae.config().shift_factor == Approx(mean).margin(1e-5));
    CHECK(vae.config().scaling_factor == Approx(1 / std::sqrt(s2 / static_cast<double>(raw.numel()))).epsilon(1e-4));
  }
  // encode: (mean - shift) * scale; decode: vae.decode(z / scale + shift).
  const auto z = latent::encode(vae, batch);
  const double scale = vae.config().scaling_factor, shift = *vae.config().shift_factor;
  const auto mean = ddpm::Tensor<float>::copy_of(vae.encode(batch).mean());
  for (index_t k = 0; k < z.numel(); k += 97) CHECK(z[k] == Approx((mean[k] - shift) * scale).margin(1e-5));
  const auto y = latent::decode(vae, z.cview());
  const auto direct = ddpm::Tensor<float>::copy_of(vae.decode(mean.cview()));
  double max_diff = 0;
  for (index_t k = 0; k < y.numel(); ++k) max_diff = std::max(max_diff, std::abs(double(y[k]) - double(direct[k])));
  CHECK(max_diff < 1e-4);
  CHECK_THROWS_WITH(latent::require_digits(z.cview(), "latents.idx"),
                    Catch::Contains("latents.idx: expected 28x28 grey images, got"));

  latent::LatentTrainOptions lo;
  lo.data = data;
  lo.autoencoder = out;  // the folder with vae/
  lo.out = out;
  lo.steps = 3;
  lo.batch = 8;
  lo.width = 8;
  REQUIRE(latent::train_latent(lo) == 0);
  REQUIRE(fs::exists(out / "unet" / "config.json"));
  REQUIRE(fs::exists(out / "scheduler" / "scheduler_config.json"));
  auto unet = latent::load_unet(out / "unet", vae);
  CHECK(unet.config().in_channels == 2);

  const std::vector<std::int64_t> labels{3, 7};
  latent::GenerateOptions g{.sampler = "ddim", .steps = 3, .guidance = 2.0, .seed = 1, .progress = false};
  const auto a = latent::generate(unet, vae, labels, g);
  REQUIRE(a.shape() == ddpm::Shape{2, 1, 28, 28});
  CHECK(std::all_of(a.begin(), a.end(), [](float v) { return std::isfinite(v); }));
  const auto b = latent::generate(unet, vae, labels, g);
  CHECK(std::equal(a.begin(), a.end(), b.begin()));  // same seed, same digits
  const auto strip = latent::trajectory(unet, vae, labels, 3, g);
  REQUIRE(strip.shape() == ddpm::Shape{6, 1, 28, 28});
  // The last snapshot of a trajectory is the sample itself.
  for (index_t k = 0; k < 784; k += 13) CHECK(strip[2 * 784 + k] == Approx(a[k]).margin(1e-5));

  // A U-Net that has the wrong channels for this autoencoder is refused.
  auto c = latent::unet_config(3, 14, 8);
  ddpm::io::save_unet2d(latent::UNet(c), root / "wrong_unet");
  CHECK_THROWS_WITH(latent::load_unet(root / "wrong_unet", vae),
                    Catch::Contains("in_channels/out_channels = 3/3: expected the autoencoder's latent_channels 2"));
  CHECK_THROWS_WITH(latent::load_vae(root / "missing"), Catch::Contains("missing: no such autoencoder folder"));
}

TEST_CASE("latent example: flops of a network evaluation", "[examples][latent]") {
  // One 3x3 convolution of the U-Net's first level alone is
  // 2 * 14 * 14 * 32 * 32 * 9 flops; the whole network is many of them, and the
  // same U-Net on 28x28 costs 4x as much (every op scales with the area).
  const auto c = latent::unet_config(2, 14, 32);
  const double f14 = latent::unet_flops(c, 14), f28 = latent::unet_flops(c, 28);
  CHECK(f14 > 10 * 2.0 * 14 * 14 * 32 * 32 * 9);
  CHECK(f28 / f14 > 3.9);
  CHECK(f28 / f14 < 4.4);  // attention grows faster than the area, the time embedding not at all
}
