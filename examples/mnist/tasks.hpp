#pragma once
// denoise, inpaint and trajectory: the library's SDEdit entry
// (sampling/sdedit.hpp), RePaint loop (sampling/inpaint.hpp) and sampling
// loop with a progress callback that sees x_t (sampling/loop.hpp), each
// driven by the same U-Net through the guidance wrapper.
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
#include "ddpm/sampling/loop.hpp"
#include "ddpm/sampling/sdedit.hpp"
#include "../common/cli.hpp"
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
  ddpm::Tensor<float> out({n * snapshots, 1, kImageSide, kImageSide});
  const auto keep = [&](int column, ddpm::ConstTensorView<float> x) {
    for (ddpm::index_t i = 0; i < n; ++i)
      std::copy(x.data() + i * kPixels, x.data() + (i + 1) * kPixels, out.data() + (i * snapshots + column) * kPixels);
  };
  keep(0, noise.cview());
  int next = 1;
  auto s = ddpm::make_sampler<float>(examples::sampler_config(o.sampler, {}, o.sigmas));
  ddpm::set_timesteps(s, o.steps);
  ddpm::sample_loop(s, model, noise.cview(), ddpm::NoiseSource<float>(rng),
                    [&](ddpm::index_t i, ddpm::index_t total, double, ddpm::ConstTensorView<float> x) {
                      // Snapshot k (1 .. snapshots - 1) after step round(k * total / (snapshots - 1)).
                      while (next < snapshots && i + 1 >= (next * total + (snapshots - 2)) / (snapshots - 1)) {
                        keep(next, x);
                        ++next;
                      }
                    });
  return out;
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

}  // namespace mnist
