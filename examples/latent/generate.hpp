#pragma once
// Sampling digits in latent space: the library's sampling loop with
// classifier-free guidance around the latent U-Net, then the decoder
// (model.hpp's decode: latents / scaling_factor + shift_factor). The
// trajectory decodes x_t at several steps; cost() counts the flops of one
// sample with backend::FlopCounter.
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/flop_counter.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/sampling/any_sampler.hpp"
#include "ddpm/sampling/guidance.hpp"
#include "ddpm/sampling/loop.hpp"
#include "../common/cli.hpp"
#include "../common/progress.hpp"
#include "../common/trajectory.hpp"
#include "../mnist/generate.hpp"
#include "model.hpp"

namespace latent {

using mnist::GenerateOptions;

// The sampler `name` for latents (no clipping: examples::DataRange).
inline ddpm::SamplerConfig latent_sampler_config(const std::string& name, const std::string& sigmas = "",
                                                 const ddpm::ScheduleConfig& schedule = {}) {
  return examples::sampler_config(name, schedule, sigmas, examples::DataRange::unbounded);
}

// The noise a batch starts from: [count, C, s, s] from Rng(seed, b).
inline ddpm::Tensor<float> start_noise(const UNet& unet, ddpm::index_t count, ddpm::index_t side, std::uint64_t seed,
                                       std::uint64_t b) {
  ddpm::Tensor<float> noise({count, unet.config().in_channels, side, side});
  ddpm::Rng rng(seed, b);
  rng.fill_normal(noise.span());
  return noise;
}

// One scaled latent per label, [labels.size(), C, s, s]; batch b starts from
// the noise of Rng(seed, b) and draws the sampler's noise from the same
// stream, so a result depends only on the seed, the labels and the options.
inline ddpm::Tensor<float> generate_latents(UNet& unet, ddpm::index_t side, std::span<const std::int64_t> labels,
                                            const GenerateOptions& o) {
  unet.set_mode(ddpm::nn::Mode::Inference);
  const auto n = static_cast<ddpm::index_t>(labels.size());
  const ddpm::index_t per = unet.config().in_channels * side * side;
  ddpm::Tensor<float> out({n, unet.config().in_channels, side, side});
  const ddpm::index_t batches = (n + o.batch - 1) / o.batch;
  examples::Progress bar("sample", batches * o.steps);
  for (ddpm::index_t b = 0; b < batches; ++b) {
    const ddpm::index_t first = b * o.batch, count = std::min(o.batch, n - first);
    std::vector<std::int64_t> batch_labels(labels.begin() + first, labels.begin() + first + count);
    auto guided = ddpm::make_guidance<float>(mnist::label_fn(unet), batch_labels,
                                             {.scale = o.guidance, .null_label = kNullLabel});
    const auto noise = start_noise(unet, count, side, o.seed, static_cast<std::uint64_t>(b));
    ddpm::Rng rng(o.seed, static_cast<std::uint64_t>(b) + (std::uint64_t{1} << 32));
    auto sampler = ddpm::make_sampler<float>(latent_sampler_config(o.sampler, o.sigmas));
    ddpm::set_timesteps(sampler, o.steps);
    const auto x = ddpm::sample_loop(sampler, guided, noise.cview(), ddpm::NoiseSource<float>(rng, *ddpm::backend::Cpu::thread_pool()),
                                     [&](ddpm::index_t i, ddpm::index_t, double) {
                                       if (o.progress) bar.update(b * o.steps + i + 1);
                                     });
    std::copy(x.begin(), x.end(), out.data() + first * per);
  }
  if (o.progress) bar.finish();
  return out;
}

// Digits [labels.size(), 1, 28, 28] in [-1, 1]: sampled latents, decoded.
inline ddpm::Tensor<float> generate(UNet& unet, VAE& vae, std::span<const std::int64_t> labels,
                                    const GenerateOptions& o) {
  const auto z = generate_latents(unet, latent_side(vae), labels, o);
  return decode(vae, z.cview());
}

// One sample per label; x_t decoded at `snapshots` evenly spaced points of
// the reverse process (the first is x_T, the last the digit):
// [labels.size() * snapshots, 1, 28, 28], sample-major.
inline ddpm::Tensor<float> trajectory(UNet& unet, VAE& vae, std::span<const std::int64_t> labels, int snapshots,
                                      const GenerateOptions& o) {
  unet.set_mode(ddpm::nn::Mode::Inference);
  const auto n = static_cast<ddpm::index_t>(labels.size());
  auto model = ddpm::make_guidance<float>(mnist::label_fn(unet), std::vector<std::int64_t>(labels.begin(), labels.end()),
                                          {.scale = o.guidance, .null_label = kNullLabel});
  const auto noise = start_noise(unet, n, latent_side(vae), o.seed, 0);
  ddpm::Rng rng(o.seed, std::uint64_t{1} << 32);
  examples::TrajectoryStrip strip(noise.cview(), snapshots);
  auto s = ddpm::make_sampler<float>(latent_sampler_config(o.sampler, o.sigmas));
  ddpm::set_timesteps(s, o.steps);
  ddpm::sample_loop(s, model, noise.cview(), ddpm::NoiseSource<float>(rng, *ddpm::backend::Cpu::thread_pool()), strip);
  return decode(vae, strip.strip().cview());
}

// Flops of one network evaluation (batch 1) of a U-Net with `config` on
// [C, side, side], counted by backend::FlopCounter.
inline double unet_flops(const ddpm::nn::UNet2DConfig& config, ddpm::index_t side) {
  ddpm::nn::UNet2D<float, ddpm::backend::FlopCounter> m(config);
  m.set_mode(ddpm::nn::Mode::Inference);
  const ddpm::Tensor<float> x({1, config.in_channels, side, side});
  const std::vector<std::int64_t> label{0};
  ddpm::backend::FlopCounter::reset();
  m.forward(x.cview(), 500.0, label);
  return ddpm::backend::FlopCounter::flops();
}

// Flops of decoding one latent [C, side, side].
inline double decode_flops(const ddpm::nn::AutoencoderKLConfig& config, ddpm::index_t side) {
  ddpm::nn::AutoencoderKL<float, ddpm::backend::FlopCounter> m(config);
  m.set_mode(ddpm::nn::Mode::Inference);
  const ddpm::Tensor<float> z({1, config.latent_channels, side, side});
  ddpm::backend::FlopCounter::reset();
  m.decode(z.cview());
  return ddpm::backend::FlopCounter::flops();
}

// Network evaluations per sample: steps x (2 with guidance: the conditional
// and the null-label branch; 1 at scale 1, where guidance skips the null branch).
inline double evaluations_per_sample(const GenerateOptions& o) {
  return static_cast<double>(o.steps) * (o.guidance == 1.0 ? 1.0 : 2.0);
}

}  // namespace latent
