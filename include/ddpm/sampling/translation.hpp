#pragma once
// Class translation by DDIM inversion: Dual Diffusion Implicit Bridges (Su
// et al. 2023, "Dual Diffusion Implicit Bridges for Image-to-Image
// Translation", Algorithm 1). The source image is encoded by the source
// condition's probability-flow ODE into the shared latent x_T (ddim_invert
// under the source labels), and decoded by the target condition's ODE
// (ddim_regenerate under the target labels). Both ODEs are deterministic,
// so the latent keeps what the two conditions share (for digits: position,
// slant, stroke width), and the decoder supplies what the target class adds.
//
//   auto fn = label_model<float>(unet);  // or any LabelModel: (x, t, labels) -> eps
//   Tensor<float> y = ddib_translate(fn, x.cview(), source_labels, target_labels, 50,
//                                    {.generation_guidance = 3, .null_label = 10});
//
// Guidance-aware: each half runs through ClassifierFreeGuidance
// (sampling/guidance.hpp) with its own scale, `inversion_guidance` under the
// source labels and `generation_guidance` under the target labels; scale 1
// is the plain conditional model, 0 the unconditional one (the null label),
// > 1 stronger conditioning. Scales other than 1 need the null label.
//
// Between Gaussians N(mu_A, s_A^2) and N(mu_B, s_B^2) with exact models the
// bridge is the affine map x -> mu_B + (s_B / s_A)(x - mu_A), up to the
// sqrt(alpha-bar) of the latent's level and the discretisation
// (tests/sampling/test_inversion.cpp checks it).
#include <cstdint>
#include <span>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/sampling/guidance.hpp"
#include "ddpm/sampling/inversion.hpp"
#include "ddpm/sampling/loop.hpp"

namespace ddpm {

struct TranslationConfig {
  DDIMInversionConfig inversion;    // the DDIM run of both halves (sampling/inversion.hpp)
  double inversion_guidance = 1.0;  // classifier-free guidance scale while inverting (source labels)
  double generation_guidance = 1.0; // ... while regenerating (target labels)
  std::int64_t null_label = -1;     // the model's "no label" class; needed for a scale other than 1
  double guidance_rescale = 0.0;    // GuidanceConfig::guidance_rescale, for both halves
};

namespace detail {
// Progress for one part of a longer run: forwards (offset + k, total, t, x).
template <Scalar T, class Progress>
auto offset_progress(Progress& inner, index_t offset, index_t total) {
  return [&inner, offset, total](index_t k, index_t, double t, ConstTensorView<T> x) {
    report_progress<T>(inner, offset + k, total, t, x);
  };
}
}  // namespace detail

// Each x[i] (of class source[i]) redrawn as class target[i]: ddim_invert
// under the source labels, then ddim_regenerate under the target labels,
// `steps` DDIM steps each (m = floor(config.inversion.strength * steps) of
// them run: a bridge through a partly noised level keeps more of the
// source). `progress` sees (k, 2 * m, t[, x]) over both halves. `model` is a LabelModel, e.g. label_model<T>(denoiser).
template <Scalar T, LabelModel<T> Model, class Progress = NoProgress>
Tensor<T> ddib_translate(Model model, ConstTensorView<T> x, std::span<const std::int64_t> source,
                         std::span<const std::int64_t> target, index_t steps, const TranslationConfig& config = {},
                         Progress&& progress = {}) {
  const index_t n = x.rank() >= 1 ? x.dim(0) : 0;
  require(static_cast<index_t>(source.size()) == n && static_cast<index_t>(target.size()) == n,
          "ddib_translate: ", source.size(), " source and ", target.size(), " target labels for a batch of ", n);
  const auto guidance = [&](double scale) {
    return GuidanceConfig{.scale = scale, .null_label = config.null_label, .guidance_rescale = config.guidance_rescale};
  };
  auto encoder = make_guidance<T>(model, std::vector<std::int64_t>(source.begin(), source.end()),
                                  guidance(config.inversion_guidance));
  auto decoder = make_guidance<T>(model, std::vector<std::int64_t>(target.begin(), target.end()),
                                  guidance(config.generation_guidance));
  config.inversion.validate();
  const index_t m = config.inversion.steps_run(steps);
  const Tensor<T> latent =
      ddim_invert(encoder, x, steps, config.inversion, detail::offset_progress<T>(progress, 0, 2 * m));
  return ddim_regenerate(decoder, latent.cview(), steps, config.inversion,
                         detail::offset_progress<T>(progress, m, 2 * m));
}

}  // namespace ddpm
