#pragma once
// `latent_diffusion train-autoencoder` and `latent_diffusion train`: the two
// stages of latent diffusion (Rombach et al. 2022), both through the
// library's train::Trainer (Adam, warm-up + cosine decay, clipping, EMA).
//
// Stage 1: the AutoencoderKL with AutoencoderObjective (L2 reconstruction +
//   kl_weight * KL); then scaling_factor = 1 / std and shift_factor = mean of
//   the posterior means over training digits, written into its config.json.
// Stage 2: the class-conditional U-Net on the scaled latents of the training
//   digits (encoded once, posterior means), epsilon prediction, label
//   dropout to the null label for classifier-free guidance.
//
// Output layout (a diffusers pipeline folder without model_index.json):
//   <out>/vae/        AutoencoderKL (train-autoencoder)
//   <out>/unet/       UNet2DModel, EMA weights (train)
//   <out>/scheduler/  scheduler_config.json: DDPMScheduler, the training schedule (train)
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "ddpm/core/random.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/io/autoencoder.hpp"
#include "ddpm/io/diffusers.hpp"
#include "ddpm/io/scheduler_config.hpp"
#include "ddpm/train/autoencoder_objective.hpp"
#include "ddpm/train/ema.hpp"
#include "ddpm/train/trainer.hpp"
#include "../common/cli.hpp"
#include "../common/progress.hpp"
#include "../mnist/tasks.hpp"
#include "../mnist/train.hpp"
#include "generate.hpp"
#include "model.hpp"

namespace latent {

using mnist::Dataset;

struct AutoencoderTrainOptions {
  fs::path data = "data/mnist";
  fs::path out = "out/latent_mnist";
  std::int64_t steps = 800;
  ddpm::index_t batch = 32;
  double lr = 2e-3;
  int width = 16;
  int latent_channels = 2;
  double kl_weight = 1e-6;
  double ema_decay = 0.995;
  std::uint64_t seed = 0;
  ddpm::index_t eval_count = 500;  // held-out digits for the PSNR
};

struct LatentTrainOptions {
  fs::path data = "data/mnist";
  fs::path autoencoder = "out/latent_mnist";
  fs::path out = "out/latent_mnist";
  std::int64_t steps = 3000;
  ddpm::index_t batch = 64;
  double lr = 2e-3;
  int width = 16;
  double ema_decay = 0.999;
  double label_dropout = 0.1;
  std::uint64_t seed = 0;
};

inline ddpm::train::LrSchedule lr_schedule(double lr, std::int64_t steps) {
  return {.base_lr = lr, .warmup_steps = std::min<std::int64_t>(100, steps / 10), .total_steps = steps,
          .min_lr = lr * 0.05};
}

// Reconstruction PSNR (dB, [0, 1] pixel scale) of `images` through encode/decode (posterior mean).
inline double reconstruction_psnr(VAE& vae, ddpm::ConstTensorView<float> images, ddpm::Tensor<float>* recon = nullptr) {
  auto y = decode(vae, encode(vae, images).cview());
  const double p = mnist::psnr(y.cview(), images);
  if (recon) *recon = std::move(y);
  return p;
}

// scaling_factor = 1 / std and shift_factor = mean of the posterior means
// of `images` under `vae` (whose config must hold scaling 1, shift 0),
// all channels pooled (as SD3's and FLUX's shift_factor).
struct LatentScale {
  double scaling_factor = 1, shift_factor = 0;
};
inline LatentScale measure_latent_scale(VAE& vae, ddpm::ConstTensorView<float> images) {
  ddpm::require(vae.config().scaling_factor == 1.0 && vae.config().shift_factor.value_or(0.0) == 0.0,
                "measure_latent_scale: the autoencoder already has a latent scale");
  const auto z = encode(vae, images);
  double sum = 0, sum2 = 0;
  for (ddpm::index_t k = 0; k < z.numel(); ++k) sum += z[k];
  const double mean = sum / static_cast<double>(z.numel());
  for (ddpm::index_t k = 0; k < z.numel(); ++k) sum2 += (z[k] - mean) * (z[k] - mean);
  const double std = std::sqrt(sum2 / static_cast<double>(z.numel()));
  ddpm::require(std > 0 && std::isfinite(std), "latent statistics: the latents have standard deviation ", std);
  return {1.0 / std, mean};
}

// Writes `vae` with `scale` in its config to `dir`: into a temporary folder
// beside it, then renamed over `dir`, so a failed save leaves the old model.
inline void save_vae(const VAE& vae, const LatentScale& scale, const fs::path& dir) {
  const fs::path tmp = dir.string() + ".tmp";
  fs::remove_all(tmp);
  auto config = vae.config();
  config.scaling_factor = scale.scaling_factor;
  config.shift_factor = scale.shift_factor;
  ddpm::io::save_autoencoder_kl(vae, tmp);
  ddpm::io::write_autoencoder_kl_config(tmp / ddpm::io::kDiffusersConfigFile, config);
  fs::remove_all(dir);
  fs::rename(tmp, dir);
}

inline int train_autoencoder(const AutoencoderTrainOptions& o) {
  const Dataset data = mnist::load_split(o.data, "train");
  const Dataset test = mnist::load_split(o.data, "t10k");
  std::fprintf(stderr, "training the autoencoder on %lld digits from %s\n", static_cast<long long>(data.size()),
               o.data.string().c_str());
  VAE vae(autoencoder_config(o.width, o.latent_channels));
  ddpm::Rng init_rng(o.seed, 0xAE);
  vae.init(init_rng);
  std::fprintf(stderr, "AutoencoderKL: %lld parameters, 28x28x1 -> %lldx%lldx%d latent\n",
               static_cast<long long>(vae.num_parameters()), static_cast<long long>(latent_side(vae)),
               static_cast<long long>(latent_side(vae)), o.latent_channels);

  using Objective = ddpm::train::AutoencoderObjective<float, VAE>;
  ddpm::train::TrainConfig tc;
  tc.lr = lr_schedule(o.lr, o.steps);
  tc.ema_decay = o.ema_decay;
  tc.seed = o.seed;
  ddpm::train::Trainer<float, VAE, Objective> trainer(
      vae, Objective({.reconstruction = ddpm::train::ReconstructionLoss::l2, .kl_weight = o.kl_weight}), tc);

  mnist::EpochOrder order(data.size(), o.seed);
  std::vector<ddpm::index_t> idx;
  ddpm::Tensor<float> x;
  std::vector<std::int64_t> labels;
  examples::Progress bar("autoencoder", o.steps, 0, 30.0);
  double smooth = -1;
  while (trainer.steps_done() < o.steps) {
    order.batch(trainer.steps_done(), o.batch, idx);
    mnist::gather(data, idx, x, labels);
    vae.set_mode(ddpm::nn::Mode::Training);
    const auto st = trainer.step(x.cview());
    smooth = smooth < 0 ? st.loss : 0.98 * smooth + 0.02 * st.loss;
    bar.update(st.step + 1, smooth);
  }
  const double secs = bar.finish();

  // The EMA weights are the model; measure and store the latent scale.
  const ddpm::train::EmaScope<float> use_ema(trainer.ema(), vae.parameters().values());
  const ddpm::index_t n_eval = std::min(o.eval_count, test.size());
  const double p = reconstruction_psnr(vae, test.images.cview().slice(0, n_eval));
  const auto scale =
      measure_latent_scale(vae, data.images.cview().slice(0, std::min<ddpm::index_t>(2000, data.size())));
  fs::create_directories(o.out);
  save_vae(vae, scale, o.out / "vae");
  std::printf("autoencoder: %lld steps in %s; held-out reconstruction PSNR %.2f dB (%lld test digits); "
              "scaling_factor %.4f, shift_factor %.4f; saved %s\n",
              static_cast<long long>(o.steps), examples::format_duration(secs).c_str(), p,
              static_cast<long long>(n_eval), scale.scaling_factor, scale.shift_factor,
              (o.out / "vae").string().c_str());
  return 0;
}

inline int train_latent(const LatentTrainOptions& o) {
  VAE vae = load_vae(o.autoencoder);
  const Dataset data = mnist::load_split(o.data, "train");
  std::fprintf(stderr, "encoding %lld training digits to latents\n", static_cast<long long>(data.size()));
  const ddpm::Tensor<float> z = encode(vae, data.images.cview());
  const ddpm::index_t side = latent_side(vae), channels = vae.config().latent_channels, per = z.numel() / z.dim(0);

  UNet unet(unet_config(static_cast<int>(channels), static_cast<int>(side), o.width));
  ddpm::Rng init_rng(o.seed, 0xC0FFEE);
  unet.init(init_rng);
  std::fprintf(stderr, "latent U-Net: %lld parameters on [%lld, %lld, %lld] latents\n",
               static_cast<long long>(unet.num_parameters()), static_cast<long long>(channels),
               static_cast<long long>(side), static_cast<long long>(side));
  const ddpm::ScheduleConfig schedule_config{};
  const ddpm::NoiseSchedule<float> schedule(schedule_config);
  ddpm::train::TrainConfig tc;
  tc.lr = lr_schedule(o.lr, o.steps);
  tc.ema_decay = o.ema_decay;
  tc.label_dropout = o.label_dropout;
  tc.null_label = kNullLabel;
  tc.seed = o.seed;
  ddpm::train::Trainer<float, UNet> trainer(unet, schedule, tc);

  mnist::EpochOrder order(data.size(), o.seed);
  std::vector<ddpm::index_t> idx;
  ddpm::Tensor<float> x({o.batch, channels, side, side});
  std::vector<std::int64_t> labels(static_cast<std::size_t>(o.batch));
  examples::Progress bar("train", o.steps, 0, 30.0);
  double smooth = -1;
  while (trainer.steps_done() < o.steps) {
    order.batch(trainer.steps_done(), o.batch, idx);
    for (ddpm::index_t i = 0; i < o.batch; ++i) {
      const auto j = idx[static_cast<std::size_t>(i)];
      std::copy(z.data() + j * per, z.data() + (j + 1) * per, x.data() + i * per);
      labels[static_cast<std::size_t>(i)] = data.labels[static_cast<std::size_t>(j)];
    }
    unet.set_mode(ddpm::nn::Mode::Training);
    const auto st = trainer.step(x.cview(), {labels, {}});
    smooth = smooth < 0 ? st.loss : 0.98 * smooth + 0.02 * st.loss;
    bar.update(st.step + 1, smooth);
  }
  const double secs = bar.finish();
  mnist::export_ema(unet, trainer.ema(), o.out / "unet");
  fs::create_directories(o.out / "scheduler");  // DDPMScheduler: the training schedule, no clipping
  ddpm::io::write_scheduler_config(o.out / "scheduler" / "scheduler_config.json",
                                   latent_sampler_config("ddpm", "", schedule_config));
  std::printf("latent U-Net: %lld steps in %s; saved %s\n", static_cast<long long>(o.steps),
              examples::format_duration(secs).c_str(), (o.out / "unet").string().c_str());
  return 0;
}

}  // namespace latent
