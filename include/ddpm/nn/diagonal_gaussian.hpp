#pragma once
// diffusers' DiagonalGaussianDistribution (the AutoencoderKL posterior), as a
// layer on the moments [N, 2L, h, w] (first L channels the mean, the last L
// the log-variance):
//   logvar = clamp(moments[:, L:], -30, 20)
//   std = exp(0.5 logvar), var = exp(logvar)
//   sample = mean + std * noise,  noise ~ N(0, 1) (given, or drawn from ddpm::Rng)
//   mode   = mean
//   kl     = 0.5 * sum over (C, H, W) of (mean^2 + var - 1 - logvar), one per batch element
// Backward takes dL/d(latent) for the latent last returned (sample or mode)
// and dL/d(kl) per batch element, and returns dL/d(moments). The clamp passes
// the gradient where -30 <= logvar <= 20 (torch.clamp) and stops it outside.
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/layer_base.hpp"

namespace ddpm::nn {

inline constexpr double kLogvarMin = -30.0, kLogvarMax = 20.0;

template <Scalar T, backend::Backend B>
class DiagonalGaussian : public LayerBase {
 public:
  using Buffer = Tensor<T, typename B::memory_space>;

  explicit DiagonalGaussian(const std::string& prefix = "posterior") : LayerBase(prefix) {}

  // Sets the distribution from moments [N, 2L, h, w] (kept, as a view, for backward).
  void forward(ConstTensorView<T> moments) {
    check(moments.rank() == 4 && moments.dim(1) % 2 == 0 && moments.dim(1) > 0,
          "expected moments [N, 2 x latent_channels, h, w], got ", moments.shape().str());
    const index_t N = moments.dim(0), L = moments.dim(1) / 2, S = L * moments.dim(2) * moments.dim(3);
    const Shape ls{N, L, moments.dim(2), moments.dim(3)};
    ensure_shape(mean_, ls);
    ensure_shape(logvar_, ls);
    ensure_shape(std_, ls);
    ensure_shape(raw_logvar_, ls);
    for (index_t n = 0; n < N; ++n)
      for (index_t i = 0; i < S; ++i) {
        const T m = moments[n * 2 * S + i], lv = moments[n * 2 * S + S + i];
        mean_[n * S + i] = m;
        raw_logvar_[n * S + i] = lv;
        const T c = std::min(std::max(lv, static_cast<T>(kLogvarMin)), static_cast<T>(kLogvarMax));
        logvar_[n * S + i] = c;
        std_[n * S + i] = std::exp(T(0.5) * c);
      }
    moments_shape_ = moments.shape();
    sampled_ = false;
    have_forward_ = true;
  }

  ConstTensorView<T> mean() const { return mean_.view(); }
  ConstTensorView<T> logvar() const { return logvar_.view(); }  // clamped
  ConstTensorView<T> std() const { return std_.view(); }
  ConstTensorView<T> mode() {
    sampled_ = false;
    return mean_.view();
  }

  // mean + std * noise; noise has the latent's shape. The noise is copied (backward needs it).
  ConstTensorView<T> sample(ConstTensorView<T> noise) {
    check(have_forward_, "sample called before forward");
    check_shape("noise", noise.shape(), mean_.shape());
    ensure_shape(noise_, mean_.shape());
    std::copy(noise.begin(), noise.end(), noise_.begin());
    return sample_with_noise();
  }
  // The same with N(0, 1) noise drawn from rng (the library's noise source).
  ConstTensorView<T> sample(Rng& rng) {
    check(have_forward_, "sample called before forward");
    ensure_shape(noise_, mean_.shape());
    rng.fill_normal(noise_.span());
    return sample_with_noise();
  }

  // KL divergence to N(0, I), one value per batch element, [N].
  ConstTensorView<T> kl() {
    check(have_forward_, "kl called before forward");
    const index_t N = mean_.dim(0), S = mean_.numel() / std::max<index_t>(N, 1);
    ensure_shape(kl_, {N});
    for (index_t n = 0; n < N; ++n) {
      T s{0};
      for (index_t i = 0; i < S; ++i) {
        const T m = mean_[n * S + i], lv = logvar_[n * S + i], var = std::exp(lv);
        s += m * m + var - T{1} - lv;
      }
      kl_[n] = T(0.5) * s;
    }
    return kl_.view();
  }

  // dlatent: dL/d(latent last returned by sample or mode), or empty for none;
  // dkl: dL/d(kl) [N], or empty for none. Returns dL/d(moments) [N, 2L, h, w].
  ConstTensorView<T> backward(ConstTensorView<T> dlatent, ConstTensorView<T> dkl = {}) {
    check_backward(have_forward_);
    const index_t N = mean_.dim(0), S = mean_.numel() / std::max<index_t>(N, 1);
    if (dlatent.data()) check_shape("latent gradient", dlatent.shape(), mean_.shape());
    if (dkl.data()) check_shape("kl gradient", dkl.shape(), {N});
    ensure_shape(dmoments_, moments_shape_);
    for (index_t n = 0; n < N; ++n) {
      const T gk = dkl.data() ? dkl[n] : T{0};
      for (index_t i = 0; i < S; ++i) {
        const index_t k = n * S + i;
        const T dz = dlatent.data() ? dlatent[k] : T{0};
        const T sd = std_[k];
        // d sample / d mean = 1; d sample / d logvar = 0.5 std noise.
        // d kl / d mean = mean; d kl / d logvar = 0.5 (var - 1).
        const T dm = dz + gk * mean_[k];
        T dlv = gk * T(0.5) * (std::exp(logvar_[k]) - T{1});
        if (sampled_) dlv += dz * T(0.5) * sd * noise_[k];
        const T raw = raw_logvar_[k];
        if (raw < static_cast<T>(kLogvarMin) || raw > static_cast<T>(kLogvarMax)) dlv = T{0};
        dmoments_[n * 2 * S + i] = dm;
        dmoments_[n * 2 * S + S + i] = dlv;
      }
    }
    return dmoments_.view();
  }

  void init(Rng&) {}
  bool sampled() const { return sampled_; }

 private:
  ConstTensorView<T> sample_with_noise() {
    ensure_shape(sample_, mean_.shape());
    for (index_t k = 0; k < mean_.numel(); ++k) sample_[k] = mean_[k] + std_[k] * noise_[k];
    sampled_ = true;
    return sample_.view();
  }

  Shape moments_shape_;
  bool sampled_ = false, have_forward_ = false;
  Buffer mean_, logvar_, raw_logvar_, std_, noise_, sample_, kl_, dmoments_;
};

}  // namespace ddpm::nn
