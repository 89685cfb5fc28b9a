#pragma once
// Sampling digits with the class-conditional U-Net: the library's sampling
// loop (sampling/loop.hpp), any of its samplers, and classifier-free
// guidance (sampling/guidance.hpp) wrapped around the network. Optionally a
// Langevin corrector between the sampler's steps (sampling/
// predictor_corrector.hpp: sample_loop_pc), or, with sampler "sde-ve", the
// score SDE predictor-corrector loop (ScoreSdeVe) run on the guided noise
// prediction turned into a VE score (sampling/ve_score.hpp).
#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "ddpm/sampling/any_sampler.hpp"
#include "ddpm/sampling/guidance.hpp"
#include "ddpm/sampling/loop.hpp"
#include "ddpm/sampling/predictor_corrector.hpp"
#include "ddpm/sampling/score_sde_ve.hpp"
#include "ddpm/sampling/ve_score.hpp"
#include "../common/cli.hpp"
#include "../common/progress.hpp"
#include "mnist_data.hpp"

namespace mnist {

using UNet = ddpm::nn::UNet2D<float, ddpm::backend::Cpu>;

// The --sampler name of the score SDE predictor-corrector loop (not one of
// the registry's samplers: its model is a score and it has its own loop).
inline constexpr const char* kSdeVe = "sde-ve";

struct GenerateOptions {
  std::string sampler = "ddpm";
  std::string sigmas = "default";  // karras / exponential for samplers with a sigma spacing
  ddpm::index_t steps = 30;
  // Langevin correction: after every predictor step but the last of a registered
  // sampler; inside sde-ve's loop (before each predictor step) when sde-ve.
  bool langevin = false;
  ddpm::LangevinConfig corrector{};
  double guidance = 6.0;
  std::uint64_t seed = 0;
  ddpm::index_t batch = 50;  // images per network call (x2 with guidance)
  bool progress = true;
};

// The network as the guidance wrapper wants it: (x, t, labels) -> eps.
inline auto label_fn(UNet& unet) {
  return [&unet](ddpm::ConstTensorView<float> x, double t, std::span<const std::int64_t> labels) {
    return unet.forward(x, t, labels);
  };
}

// One image per label, [labels.size(), 1, 28, 28] in [-1, 1]. Batch b starts
// from the noise of Rng(seed, b), so a result depends only on the seed,
// the labels and the options.
inline ddpm::Tensor<float> generate(UNet& unet, std::span<const std::int64_t> labels, const GenerateOptions& o) {
  unet.set_mode(ddpm::nn::Mode::Inference);
  const auto n = static_cast<ddpm::index_t>(labels.size());
  ddpm::Tensor<float> out({n, 1, 28, 28});
  const ddpm::index_t batches = (n + o.batch - 1) / o.batch;
  examples::Progress bar("sample", batches * o.steps);
  const auto pool = ddpm::backend::Cpu::thread_pool();
  for (ddpm::index_t b = 0; b < batches; ++b) {
    const ddpm::index_t first = b * o.batch, count = std::min(o.batch, n - first);
    std::vector<std::int64_t> batch_labels(labels.begin() + first, labels.begin() + first + count);
    auto guided = ddpm::make_guidance<float>(label_fn(unet), batch_labels, {.scale = o.guidance, .null_label = kNullLabel});
    ddpm::Rng rng(o.seed, static_cast<std::uint64_t>(b));
    ddpm::Tensor<float> noise({count, 1, 28, 28});
    rng.fill_normal(noise.span());
    const ddpm::NoiseSource<float> step_noise(rng, *pool);
    const auto tick = [&](ddpm::index_t i) {
      if (o.progress) bar.update(b * o.steps + i + 1);
    };
    const auto on_call = [&](const ddpm::PCCall<float>& c) {
      if (c.kind == ddpm::PCCall<float>::predict) tick(c.step);
    };
    ddpm::Tensor<float> x;
    if (o.sampler == kSdeVe) {
      const ddpm::NoiseSchedule<float> schedule(ddpm::ScheduleConfig{});
      auto score = ddpm::ve_score_from_prediction<float>(
          [&guided](ddpm::ConstTensorView<float> in, double t) { return guided(in, t); }, schedule);
      ddpm::ScoreSdeVeConfig c{.snr = o.corrector.snr, .correct_steps = o.langevin ? o.corrector.correct_steps : 0};
      ddpm::ScoreSdeVeScheduler<float> sde(ddpm::ve_score_config(schedule, c));
      sde.set_sigmas(o.steps);
      x = ddpm::score_sde_ve_sample(sde, score, noise.cview(), step_noise, on_call);
    } else {
      auto sampler = ddpm::make_sampler<float>(examples::sampler_config(o.sampler, {}, o.sigmas));
      ddpm::set_timesteps(sampler, o.steps);
      if (o.langevin)
        x = ddpm::sample_loop_pc(sampler, guided, noise.cview(), step_noise, o.corrector, on_call);
      else
        x = ddpm::sample_loop(sampler, guided, noise.cview(), step_noise,
                              [&](ddpm::index_t i, ddpm::index_t, double) { tick(i); });
    }
    // Images in [-1, 1], as a pipeline returns them: a sampler without
    // clipping (Euler, Heun, ...) may overshoot the data range.
    std::transform(x.begin(), x.end(), out.data() + first * kPixels, [](float v) { return std::clamp(v, -1.0f, 1.0f); });
  }
  if (o.progress) bar.finish();
  return out;
}

}  // namespace mnist
