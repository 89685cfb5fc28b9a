#pragma once
// denoise, inpaint, trajectory, invert and translate: the library's SDEdit
// entry (sampling/sdedit.hpp), RePaint loop (sampling/inpaint.hpp), sampling
// loop with a progress callback that sees x_t (sampling/loop.hpp), DDIM
// inversion (sampling/inversion.hpp) and translation by inversion
// (sampling/translation.hpp), each driven by the same U-Net through the
// guidance wrapper.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "ddpm/core/random.hpp"
#include "ddpm/sampling/any_sampler.hpp"
#include "ddpm/sampling/guidance.hpp"
#include "ddpm/sampling/inpaint.hpp"
#include "ddpm/sampling/inversion.hpp"
#include "ddpm/sampling/loop.hpp"
#include "ddpm/sampling/sdedit.hpp"
#include "ddpm/sampling/translation.hpp"
#include "../common/cli.hpp"
#include "../common/trajectory.hpp"
#include "generate.hpp"
#include "mnist_data.hpp"

namespace mnist {

// PSNR in dB of `a` against `b`, both in [-1, 1], on the [0, 1] pixel scale
// (values clipped to the range first).
inline double psnr(ddpm::ConstTensorView<float> a, ddpm::ConstTensorView<float> b) {
  double mse = 0;
  for (ddpm::index_t i = 0; i < a.numel(); ++i) {
    const double x = std::clamp(static_cast<double>(a[i]), -1.0, 1.0), y = std::clamp(static_cast<double>(b[i]), -1.0, 1.0);
    mse += 0.25 * (x - y) * (x - y);
  }
  mse /= static_cast<double>(a.numel());
  return 10.0 * std::log10(1.0 / std::max(mse, 1e-12));
}

// Rows of `count` images each, stacked: [rows * count, 1, kImageSide, kImageSide].
inline ddpm::Tensor<float> stack_rows(std::initializer_list<ddpm::ConstTensorView<float>> rows) {
  ddpm::index_t total = 0;
  for (auto r : rows) total += r.dim(0);
  ddpm::Tensor<float> out({total, 1, kImageSide, kImageSide});
  float* p = out.data();
  for (auto r : rows) p = std::copy(r.begin(), r.end(), p);
  return out;
}

// Labels for a batch: all `label`, or the null label (unconditional) when label < 0.
inline std::vector<std::int64_t> labels_for(ddpm::index_t n, int label) {
  return std::vector<std::int64_t>(static_cast<std::size_t>(n), label < 0 ? kNullLabel : label);
}

struct DenoiseResult {
  ddpm::Tensor<float> noisy, denoised;
  double psnr_noisy = 0, psnr_denoised = 0;
};

// Adds N(0, sigma^2) noise (sigma in the [-1, 1] data units) to `clean` and
// removes it by entering the reverse process at the matching timestep.
inline DenoiseResult denoise(UNet& unet, ddpm::ConstTensorView<float> clean, double sigma, const std::string& sampler,
                             ddpm::index_t steps, std::uint64_t seed, ddpm::index_t batch = 100) {
  unet.set_mode(ddpm::nn::Mode::Inference);
  DenoiseResult r;
  r.noisy = ddpm::Tensor<float>(clean.shape());
  r.denoised = ddpm::Tensor<float>(clean.shape());
  ddpm::Rng rng(seed);
  rng.fill_normal(r.noisy.span(), 0.0, sigma);
  for (ddpm::index_t i = 0; i < clean.numel(); ++i) r.noisy[i] += clean[i];
  const ddpm::index_t n = clean.dim(0);
  for (ddpm::index_t first = 0; first < n; first += batch) {
    const ddpm::index_t count = std::min(batch, n - first);
    auto model = ddpm::make_guidance<float>(label_fn(unet), labels_for(count, -1), {});
    auto s = ddpm::make_sampler<float>(examples::sampler_config(sampler));
    ddpm::set_timesteps(s, steps);
    const auto out = ddpm::sdedit(s, model, r.noisy.cview().slice(first, count), sigma, ddpm::NoiseSource<float>(rng));
    std::copy(out.begin(), out.end(), r.denoised.data() + first * kPixels);
  }
  r.psnr_noisy = psnr(r.noisy.cview(), clean);
  r.psnr_denoised = psnr(r.denoised.cview(), clean);
  return r;
}

// Fills the pixels where mask == 0 (RePaint). label < 0: unconditional.
inline ddpm::Tensor<float> inpaint(UNet& unet, ddpm::ConstTensorView<float> images, ddpm::ConstTensorView<float> mask,
                                   const std::string& sampler, ddpm::index_t steps, ddpm::index_t resample, int label,
                                   std::uint64_t seed) {
  unet.set_mode(ddpm::nn::Mode::Inference);
  const ddpm::index_t n = images.dim(0);
  auto model = ddpm::make_guidance<float>(label_fn(unet), labels_for(n, label), {});
  ddpm::Rng rng(seed);
  ddpm::Tensor<float> noise(images.shape());
  rng.fill_normal(noise.span());
  examples::Progress bar("inpaint", steps);
  const auto step_bar = [&](ddpm::index_t i, ddpm::index_t, double) { bar.update(i + 1); };
  examples::require_repaint_sampler(sampler, "inpaint: --sampler");
  auto s = ddpm::make_sampler<float>(examples::sampler_config(sampler));
  ddpm::set_timesteps(s, steps);
  ddpm::Tensor<float> out = ddpm::repaint(s, model, images, mask, noise.cview(), rng, {.resample = resample}, step_bar);
  bar.finish();
  return out;
}

// Samples one digit per label and keeps x_t at `snapshots` evenly spaced
// points of the reverse process (the first is x_T, the last the digit):
// [labels.size() * snapshots, 1, kImageSide, kImageSide], sample-major.
inline ddpm::Tensor<float> trajectory(UNet& unet, std::span<const std::int64_t> labels, int snapshots,
                                      const GenerateOptions& o) {
  unet.set_mode(ddpm::nn::Mode::Inference);
  const auto n = static_cast<ddpm::index_t>(labels.size());
  auto model = ddpm::make_guidance<float>(label_fn(unet), std::vector<std::int64_t>(labels.begin(), labels.end()),
                                          {.scale = o.guidance, .null_label = kNullLabel});
  ddpm::Rng rng(o.seed);
  ddpm::Tensor<float> noise({n, 1, kImageSide, kImageSide});
  rng.fill_normal(noise.span());
  examples::TrajectoryStrip strip(noise.cview(), snapshots);
  auto s = ddpm::make_sampler<float>(examples::sampler_config(o.sampler, {}, o.sigmas));
  ddpm::set_timesteps(s, o.steps);
  ddpm::sample_loop(s, model, noise.cview(), ddpm::NoiseSource<float>(rng), strip);
  return std::move(strip).take();
}

// A mask for kImageSide x kImageSide images: 1 (known) everywhere but the rectangle
// x, y, w, h, which is 0 (to fill).
inline ddpm::Tensor<float> rectangle_mask(int x, int y, int w, int h) {
  ddpm::require(w > 0 && h > 0 && x >= 0 && y >= 0 && x + w <= kImageSide && y + h <= kImageSide,
                "--region: expected x,y,w,h with w, h > 0 inside the 28x28 image, got ", x, ",", y, ",", w, ",", h);
  ddpm::Tensor<float> m({1, 1, kImageSide, kImageSide}, 1.f);
  for (int r = y; r < y + h; ++r)
    for (int c = x; c < x + w; ++c) m[r * kImageSide + c] = 0.f;
  return m;
}

// Ink mass of image i of `images` ([-1, 1]): the sum of its pixel
// intensities on the [0, 1] scale.
inline double ink_mass(ddpm::ConstTensorView<float> images, ddpm::index_t i) {
  double sum = 0;
  for (ddpm::index_t k = i * kPixels; k < (i + 1) * kPixels; ++k)
    sum += 0.5 * (std::clamp(static_cast<double>(images[k]), -1.0, 1.0) + 1.0);
  return sum;
}

// The mean over images of |ink(b_i) - ink(a_i)| / ink(a_i) (signed: of
// (ink(b_i) - ink(a_i)) / ink(a_i)).
inline double mean_relative_ink_change(ddpm::ConstTensorView<float> a, ddpm::ConstTensorView<float> b,
                                       bool signed_change = false) {
  double sum = 0;
  for (ddpm::index_t i = 0; i < a.dim(0); ++i) {
    const double d = (ink_mass(b, i) - ink_mass(a, i)) / std::max(ink_mass(a, i), 1.0);
    sum += signed_change ? d : std::abs(d);
  }
  return a.dim(0) > 0 ? sum / static_cast<double>(a.dim(0)) : 0.0;
}

// Groups of rows for a PNG grid of `columns` columns: `columns` images of
// sets[0], the same of sets[1] below them, ..., then the next `columns` of
// each; the last group is filled with paper (-1). All sets hold N images.
inline ddpm::Tensor<float> interleaved_rows(std::initializer_list<ddpm::ConstTensorView<float>> sets,
                                            ddpm::index_t columns) {
  const auto k = static_cast<ddpm::index_t>(sets.size());
  const ddpm::index_t n = sets.begin()->dim(0), rows = (n + columns - 1) / columns;
  ddpm::Tensor<float> out({k * rows * columns, 1, kImageSide, kImageSide}, -1.f);
  ddpm::index_t s = 0;
  for (const auto& a : sets) {
    for (ddpm::index_t i = 0; i < n; ++i) {
      const ddpm::index_t r = i / columns, c = i % columns;
      std::copy(a.data() + i * kPixels, a.data() + (i + 1) * kPixels, out.data() + ((k * r + s) * columns + c) * kPixels);
    }
    ++s;
  }
  return out;
}

// Pairs of rows: `columns` images of `a` over the same of `b`, and so on.
inline ddpm::Tensor<float> pair_rows(ddpm::ConstTensorView<float> a, ddpm::ConstTensorView<float> b, ddpm::index_t columns) {
  return interleaved_rows({a, b}, columns);
}

// The DDIM run of invert and translate. Defaults: what the README's
// inversion and translation figures were measured with.
struct EditOptions {
  ddpm::index_t steps = 50;
  double inversion_guidance = 1.0;   // scale while inverting under the source (own) label
  double generation_guidance = 1.0;  // scale while regenerating (invert: own label; translate: target)
  double guidance_rescale = 0.0;     // GuidanceConfig::guidance_rescale, both directions
  ddpm::index_t fixed_point = 0;     // fixed-point refinements per inverse step (sampling/inversion.hpp)
  double strength = 1.0;             // DDIMInversionConfig::strength: how far toward noise the bridge goes
  ddpm::index_t batch = 100;         // digits per network call (x2 with guidance)
  bool progress = true;
};

inline ddpm::DDIMInversionConfig inversion_config(const EditOptions& o) {
  ddpm::DDIMInversionConfig c;
  c.fixed_point_iterations = o.fixed_point;
  c.strength = o.strength;
  return c;
}

// Checks the digits and labels that invert and translate take: 28x28
// images, one label in [0, 9] per image.
inline void check_digits(ddpm::ConstTensorView<float> images, std::span<const std::int64_t> labels) {
  ddpm::require(images.rank() == 4 && images.dim(1) == 1 && images.dim(2) == kImageSide && images.dim(3) == kImageSide,
                "--input: expected 28x28 images, got ", images.shape().str());
  ddpm::require(static_cast<ddpm::index_t>(labels.size()) == images.dim(0), "--labels: ", labels.size(),
                " labels for ", images.dim(0), " images");
  for (std::size_t i = 0; i < labels.size(); ++i)
    ddpm::require(labels[i] >= 0 && labels[i] < kNumClasses, "--labels: label ", labels[i], " at index ", i,
                  " is outside [0, ", kNumClasses - 1, "]");
}

struct InvertResult {
  ddpm::Tensor<float> latent, reconstructed;
  double mean_psnr = 0;  // mean over digits of each reconstruction's PSNR
};

// Inverts each digit under its label (DDIM, eta 0) and regenerates it from
// the latent under the same label.
inline InvertResult invert_digits(UNet& unet, ddpm::ConstTensorView<float> images, std::span<const std::int64_t> labels,
                                  const EditOptions& o) {
  check_digits(images, labels);
  unet.set_mode(ddpm::nn::Mode::Inference);
  const ddpm::index_t n = images.dim(0);
  InvertResult r{ddpm::Tensor<float>(images.shape()), ddpm::Tensor<float>(images.shape())};
  const ddpm::index_t per_batch = 2 * inversion_config(o).steps_run(o.steps);  // progress: both directions
  examples::Progress bar("invert", ((n + o.batch - 1) / o.batch) * per_batch);
  const auto cfg = inversion_config(o);
  for (ddpm::index_t first = 0, b = 0; first < n; first += o.batch, ++b) {
    const ddpm::index_t count = std::min(o.batch, n - first);
    const std::vector<std::int64_t> own(labels.begin() + first, labels.begin() + first + count);
    const auto guide = [&](double scale) {
      return ddpm::make_guidance<float>(label_fn(unet), own,
                                        {.scale = scale, .null_label = kNullLabel, .guidance_rescale = o.guidance_rescale});
    };
    auto encoder = guide(o.inversion_guidance);
    auto decoder = guide(o.generation_guidance);
    ddpm::index_t done = b * per_batch;
    const auto tick = [&](ddpm::index_t, ddpm::index_t, double) {
      if (o.progress) bar.update(++done);
    };
    const auto z = ddpm::ddim_invert(encoder, images.slice(first, count), o.steps, cfg, tick);
    done = b * per_batch + per_batch / 2;
    const auto x = ddpm::ddim_regenerate(decoder, z.cview(), o.steps, cfg, tick);
    std::copy(z.begin(), z.end(), r.latent.data() + first * kPixels);
    std::copy(x.begin(), x.end(), r.reconstructed.data() + first * kPixels);
  }
  if (o.progress) bar.finish();
  for (ddpm::index_t i = 0; i < n; ++i) r.mean_psnr += psnr(r.reconstructed.cview().slice(i, 1), images.slice(i, 1));
  r.mean_psnr /= static_cast<double>(std::max<ddpm::index_t>(n, 1));
  return r;
}

// Each digit redrawn as class target[i] (Dual Diffusion Implicit Bridges):
// inverted under its own label, regenerated under the target label.
inline ddpm::Tensor<float> translate_digits(UNet& unet, ddpm::ConstTensorView<float> images,
                                            std::span<const std::int64_t> labels, std::span<const std::int64_t> target,
                                            const EditOptions& o) {
  check_digits(images, labels);
  for (auto k : target)
    ddpm::require(k >= 0 && k < kNumClasses, "--to: expected an integer in [0, ", kNumClasses - 1, "], got ", k);
  unet.set_mode(ddpm::nn::Mode::Inference);
  const ddpm::index_t n = images.dim(0);
  ddpm::Tensor<float> out(images.shape());
  const ddpm::index_t per_batch = 2 * inversion_config(o).steps_run(o.steps);  // progress: both directions
  examples::Progress bar("translate", ((n + o.batch - 1) / o.batch) * per_batch);
  ddpm::TranslationConfig cfg{.inversion = inversion_config(o),
                              .inversion_guidance = o.inversion_guidance,
                              .generation_guidance = o.generation_guidance,
                              .null_label = kNullLabel,
                              .guidance_rescale = o.guidance_rescale};
  for (ddpm::index_t first = 0, b = 0; first < n; first += o.batch, ++b) {
    const ddpm::index_t count = std::min(o.batch, n - first);
    ddpm::index_t done = b * per_batch;
    const auto y = ddpm::ddib_translate(label_fn(unet), images.slice(first, count), labels.subspan(first, count),
                                        target.subspan(first, count), o.steps, cfg,
                                        [&](ddpm::index_t, ddpm::index_t, double) {
                                          if (o.progress) bar.update(++done);
                                        });
    std::copy(y.begin(), y.end(), out.data() + first * kPixels);
  }
  if (o.progress) bar.finish();
  return out;
}

}  // namespace mnist
