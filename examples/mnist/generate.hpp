#pragma once
// Sampling digits with the class-conditional U-Net: the library's sampling
// loop (sampling/loop.hpp), any of its samplers, and classifier-free
// guidance (sampling/guidance.hpp) wrapped around the network.
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
#include "../common/cli.hpp"
#include "../common/progress.hpp"
#include "mnist_data.hpp"

namespace mnist {

using UNet = ddpm::nn::UNet2D<float, ddpm::backend::Cpu>;

struct GenerateOptions {
  std::string sampler = "ddpm";
  std::string sigmas = "default";  // karras / exponential for samplers with a sigma spacing
  ddpm::index_t steps = 30;
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
  for (ddpm::index_t b = 0; b < batches; ++b) {
    const ddpm::index_t first = b * o.batch, count = std::min(o.batch, n - first);
    std::vector<std::int64_t> batch_labels(labels.begin() + first, labels.begin() + first + count);
    auto guided = ddpm::make_guidance<float>(label_fn(unet), batch_labels, {.scale = o.guidance, .null_label = kNullLabel});
    ddpm::Rng rng(o.seed, static_cast<std::uint64_t>(b));
    ddpm::Tensor<float> noise({count, 1, 28, 28});
    rng.fill_normal(noise.span());
    auto sampler = ddpm::make_sampler<float>(examples::sampler_config(o.sampler, {}, o.sigmas));
    ddpm::set_timesteps(sampler, o.steps);
    const ddpm::Tensor<float> x = ddpm::sample_loop(sampler, guided, noise.cview(), ddpm::NoiseSource<float>(rng),
                                                    [&](ddpm::index_t i, ddpm::index_t, double) {
                                                      if (o.progress) bar.update(b * o.steps + i + 1);
                                                    });
    // Images in [-1, 1], as a pipeline returns them: a sampler without
    // clipping (Euler, Heun, ...) may overshoot the data range.
    std::transform(x.begin(), x.end(), out.data() + first * kPixels, [](float v) { return std::clamp(v, -1.0f, 1.0f); });
  }
  if (o.progress) bar.finish();
  return out;
}

}  // namespace mnist
