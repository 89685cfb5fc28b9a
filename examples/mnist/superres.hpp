#pragma once
// Super-resolution of digits (SR3, Saharia et al. 2021): a U-Net that sees
// the noisy 28x28 digit concatenated with the bicubic upsampling of its
// low-resolution version (Conditioning::image, one channel) and denoises it.
//
// The degradation, fixed: the 28x28 digit (8-bit) averaged over k x k boxes,
// rounded to 8 bits: 14x14 for scale 2, 7x7 for scale 4. The condition image
// and the baseline: bicubic upsampling back to 28x28 (examples/common/
// resample.hpp: Keys a = -0.5, centres aligned, edges replicated, rounded to
// 8 bits). One model serves both scales: it is trained with the scale of
// each sample drawn at random.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/io/image.hpp"
#include "ddpm/nn/unet2d_config.hpp"
#include "ddpm/sampling/any_sampler.hpp"
#include "ddpm/sampling/guidance.hpp"
#include "ddpm/sampling/loop.hpp"
#include "../common/cli.hpp"
#include "../common/image_metrics.hpp"
#include "../common/progress.hpp"
#include "../common/resample.hpp"
#include "classifier.hpp"
#include "generate.hpp"
#include "mnist_data.hpp"

namespace mnist {

inline constexpr int kSuperresScales[] = {2, 4};

// "--scale: expected 2 or 4, got 3" unless `scale` is one of kSuperresScales.
inline void check_superres_scale(int scale, const char* what = "--scale") {
  ddpm::require(std::ranges::find(kSuperresScales, scale) != std::end(kSuperresScales), what,
                ": expected 2 or 4, got ", scale);
}

// The super-resolution U-Net: 28 -> 14 -> 7 with width, 2 width, 2 width
// channels, one ResNet block per level, attention at 7x7 and in the mid
// block, no class embedding; in_channels = 1 noise + 1 condition channel.
inline ddpm::nn::UNet2DConfig superres_unet_config(int width = 16) {
  ddpm::nn::UNet2DConfig c = unet_config(width);
  c.block_out_channels = {width, 2 * width, 2 * width};
  c.num_class_embeds.reset();
  c.in_channels = 2;
  c.condition_channels = 1;
  return c;
}

namespace detail {
// [-1, 1] <-> 8-bit values (rounded), as io::load_idx_images / write_idx_images map them.
inline float to_byte(float v) { return static_cast<float>(ddpm::io::to_byte(v)); }
inline float from_byte(float b) { return b / 127.5f - 1.0f; }

// Applies f(in plane of h x w bytes, out plane) to each image of x [N, 1, h, w] (values in [-1, 1]).
template <class F>
ddpm::Tensor<float> map_planes(ddpm::ConstTensorView<float> x, int out_side, F&& f) {
  ddpm::require(x.rank() == 4 && x.dim(1) == 1 && x.dim(2) == x.dim(3), "super-resolution: expected square images"
                " [N, 1, H, H], got ", x.shape().str());
  const int side = static_cast<int>(x.dim(2));
  const auto in_n = static_cast<std::size_t>(side) * side, out_n = static_cast<std::size_t>(out_side) * out_side;
  ddpm::Tensor<float> y({x.dim(0), 1, out_side, out_side});
  std::vector<float> in(in_n), out(out_n);
  for (ddpm::index_t i = 0; i < x.dim(0); ++i) {
    for (std::size_t p = 0; p < in_n; ++p) in[p] = to_byte(x[static_cast<ddpm::index_t>(i * in_n + p)]);
    f(std::span<const float>(in), side, std::span<float>(out));
    for (std::size_t p = 0; p < out_n; ++p) y[static_cast<ddpm::index_t>(i * out_n + p)] = from_byte(out[p]);
  }
  return y;
}
}  // namespace detail

// The degradation: images [N, 1, 28, 28] in [-1, 1] -> [N, 1, 28 / k, 28 / k]
// (k x k box averages of the 8-bit pixels, rounded to 8 bits).
inline ddpm::Tensor<float> degrade(ddpm::ConstTensorView<float> hr, int k) {
  check_superres_scale(k);
  ddpm::require(hr.rank() == 4 && hr.dim(2) == kImageSide && hr.dim(3) == kImageSide,
                "degrade: expected 28x28 digits, got ", hr.shape().str());
  return detail::map_planes(hr, kImageSide / k, [k](std::span<const float> in, int side, std::span<float> out) {
    examples::box_downsample(in, side, side, k, out);
  });
}

// Bicubic upsampling by k: [N, 1, s, s] -> [N, 1, s k, s k], in [-1, 1] (8-bit values).
inline ddpm::Tensor<float> bicubic(ddpm::ConstTensorView<float> lr, int k) {
  ddpm::require(lr.rank() == 4, "bicubic: expected images [N, 1, H, H], got ", lr.shape().str());
  return detail::map_planes(lr, static_cast<int>(lr.dim(2)) * k,
                            [k](std::span<const float> in, int side, std::span<float> out) {
                              examples::bicubic_upsample(in, side, side, k, out);
                            });
}

// Checks that low-resolution images [N, 1, s, s] fit `scale` (s = 28 / scale).
inline void check_low_res(ddpm::ConstTensorView<float> lr, int scale, const std::string& what) {
  const int s = kImageSide / scale;
  ddpm::require(lr.rank() == 4 && lr.dim(2) == s && lr.dim(3) == s, what, ": expected ", s, "x", s,
                " images for --scale ", scale, ", got ", lr.dim(-2), "x", lr.dim(-1));
}

// The training condition of a batch x0 [N, 1, 28, 28]: sample i's scale is
// scales[Rng(seed, 2^42 + step).uniform_int(|scales|)] (the i-th draw), its
// condition bicubic(degrade(x0_i, scale), scale). A pure function of
// (x0, scales, seed, step), so resumed and data-parallel runs see the same.
inline void superres_condition(ddpm::ConstTensorView<float> x0, std::span<const int> scales, std::uint64_t seed,
                               std::int64_t step, ddpm::Tensor<float>& cond) {
  const ddpm::index_t n = x0.dim(0);
  if (!(cond.shape() == x0.shape())) cond.resize(x0.shape());
  ddpm::Rng rng(seed, (std::uint64_t{1} << 42) + static_cast<std::uint64_t>(step));
  for (ddpm::index_t i = 0; i < n; ++i) {
    const int k = scales[static_cast<std::size_t>(rng.uniform_int(scales.size()))];
    const auto up = bicubic(degrade(x0.slice(i, 1), k).cview(), k);
    std::copy(up.begin(), up.end(), cond.data() + i * kPixels);
  }
}

// Nearest-neighbour upsampling by k (how the low-resolution input is drawn).
inline ddpm::Tensor<float> nearest(ddpm::ConstTensorView<float> lr, int k) {
  const ddpm::index_t n = lr.dim(0), s = lr.dim(2), side = s * k;
  ddpm::Tensor<float> y({n, 1, side, side});
  for (ddpm::index_t i = 0; i < n; ++i)
    for (ddpm::index_t r = 0; r < side; ++r)
      for (ddpm::index_t c = 0; c < side; ++c) y[(i * side + r) * side + c] = lr[(i * s + r / k) * s + c / k];
  return y;
}

// The model must take 1 noise + 1 condition channel at 28x28.
inline void check_superres_model(const UNet& unet, const std::string& dir) {
  const auto& c = unet.config();
  ddpm::require(c.in_channels == 2 && c.condition_channels == 1 && c.out_channels == 1, "--model: ", dir,
                " has in_channels = ", c.in_channels, " with ", c.condition_channels,
                " condition channels; super-resolution needs in_channels = 2 (1 noise + 1 condition channel: a model"
                " from `train --superres-scales`)");
}

// Defaults: ancestral DDPM sampling, 20 steps (on 200 held-out digits with
// a partly trained model, DDPM at 10, 20 and 50 steps were within 0.5 dB of
// each other at 4x, and 2 dB above DDIM at 20 steps).
struct SuperresOptions {
  std::string sampler = "ddpm";
  ddpm::index_t steps = 20;
  std::uint64_t seed = 0;
  ddpm::index_t batch = 50;  // images per network call
  bool progress = true;
};

// Super-resolves low-resolution digits lr [N, 1, 28 / k, 28 / k] (in [-1, 1])
// to [N, 1, 28, 28], 8-bit values in [-1, 1]: the reverse process of the
// model conditioned on bicubic(lr, k). Batch b starts from the noise of
// Rng(seed, b), so the result depends only on the inputs, seed and options
// (not on the thread count).
inline ddpm::Tensor<float> superres(UNet& unet, ddpm::ConstTensorView<float> lr, int k, const SuperresOptions& o) {
  check_superres_scale(k);
  check_low_res(lr, k, "super-resolution");
  unet.set_mode(ddpm::nn::Mode::Inference);
  const auto cond = bicubic(lr, k);
  const ddpm::index_t n = lr.dim(0), batches = (n + o.batch - 1) / o.batch;
  ddpm::Tensor<float> out({n, 1, kImageSide, kImageSide});
  examples::Progress bar("superres", batches * o.steps);
  const auto pool = ddpm::backend::Cpu::thread_pool();
  for (ddpm::index_t b = 0; b < batches; ++b) {
    const ddpm::index_t first = b * o.batch, count = std::min(o.batch, n - first);
    auto model = ddpm::make_guidance<float>(ddpm::conditioned_model<float>(unet), {}, {.scale = 1.0},
                                            cond.cview().slice(first, count));
    ddpm::Rng rng(o.seed, static_cast<std::uint64_t>(b));
    ddpm::Tensor<float> noise({count, 1, kImageSide, kImageSide});
    rng.fill_normal(noise.span());
    auto sampler = ddpm::make_sampler<float>(examples::sampler_config(o.sampler));
    ddpm::set_timesteps(sampler, o.steps);
    const auto x = ddpm::sample_loop(sampler, model, noise.cview(), ddpm::NoiseSource<float>(rng, *pool),
                                     [&](ddpm::index_t i, ddpm::index_t, double) {
                                       if (o.progress) bar.update(b * o.steps + i + 1);
                                     });
    std::transform(x.begin(), x.end(), out.data() + first * kPixels,
                   [](float v) { return detail::from_byte(detail::to_byte(v)); });
  }
  if (o.progress) bar.finish();
  return out;
}

// Mean PSNR (dB, each image's capped at 100 dB) and mean SSIM of images
// against references, on the 8-bit scale.
struct Fidelity {
  double psnr = 0, ssim = 0;
};
inline Fidelity fidelity(ddpm::ConstTensorView<float> x, ddpm::ConstTensorView<float> ref) {
  ddpm::require(x.shape() == ref.shape() && x.dim(0) > 0, "fidelity: images ", x.shape().str(), " against ",
                ref.shape().str());
  const ddpm::index_t n = x.dim(0), per = x.numel() / n;
  const int h = static_cast<int>(x.dim(-2)), w = static_cast<int>(x.dim(-1));
  std::vector<float> a(static_cast<std::size_t>(per)), b(a.size());
  Fidelity f;
  for (ddpm::index_t i = 0; i < n; ++i) {
    for (ddpm::index_t p = 0; p < per; ++p) {
      a[static_cast<std::size_t>(p)] = detail::to_byte(x[i * per + p]);
      b[static_cast<std::size_t>(p)] = detail::to_byte(ref[i * per + p]);
    }
    f.psnr += std::min(examples::psnr(a, b), 100.0);
    f.ssim += examples::ssim(a, b, h, w);
  }
  f.psnr /= static_cast<double>(n), f.ssim /= static_cast<double>(n);
  return f;
}

// One row of `superres --evaluate`: at scale k on held-out digits, PSNR and
// SSIM against the originals and the classifier's accuracy.
struct SuperresScore {
  int scale = 0;
  Fidelity bicubic, ours;
  double accuracy_original = 0, accuracy_bicubic = 0, accuracy_ours = 0;
};

inline SuperresScore evaluate_superres(UNet& unet, Classifier& net, const Dataset& test, int k,
                                       const SuperresOptions& o) {
  SuperresScore s;
  s.scale = k;
  const auto lr = degrade(test.images.cview(), k);
  const auto bic = bicubic(lr.cview(), k);
  const auto ours = superres(unet, lr.cview(), k, o);
  s.bicubic = fidelity(bic.cview(), test.images.cview());
  s.ours = fidelity(ours.cview(), test.images.cview());
  s.accuracy_original = accuracy(classify(net, test.images.cview()), test.labels);
  s.accuracy_bicubic = accuracy(classify(net, bic.cview()), test.labels);
  s.accuracy_ours = accuracy(classify(net, ours.cview()), test.labels);
  return s;
}

// The Markdown table of `superres --evaluate`.
inline std::string superres_table(std::span<const SuperresScore> rows) {
  std::string md =
      "| scale | PSNR bicubic | PSNR ours | SSIM bicubic | SSIM ours | accuracy original | accuracy bicubic |"
      " accuracy ours |\n|---|---|---|---|---|---|---|---|\n";
  char line[256];
  for (const auto& r : rows) {
    std::snprintf(line, sizeof line, "| %dx | %.2f dB | %.2f dB | %.4f | %.4f | %.1f%% | %.1f%% | %.1f%% |\n", r.scale,
                  r.bicubic.psnr, r.ours.psnr, r.bicubic.ssim, r.ours.ssim, 100 * r.accuracy_original,
                  100 * r.accuracy_bicubic, 100 * r.accuracy_ours);
    md += line;
  }
  return md;
}

}  // namespace mnist
