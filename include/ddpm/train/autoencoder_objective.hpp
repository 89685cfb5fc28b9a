#pragma once
// The autoencoder's training loss, an Objective (train/objective.hpp) for
// train::Trainer, so an AutoencoderKL or a VQModel trains with the same loop
// as the U-Net (Adam(W), EMA, clipping, bit-identical resume, data-parallel):
//
//   using VAE = nn::AutoencoderKL<float, backend::Cpu>;
//   train::AutoencoderObjective<float, VAE> objective({.reconstruction = train::ReconstructionLoss::l1});
//   train::Trainer<float, VAE, train::AutoencoderObjective<float, VAE>> trainer(vae, objective, config);
//   trainer.step(images);   // images [N, C, H, W]; the conditioning is ignored
//
// KL models (a model with posterior(); as diffusers' train_autoencoderkl.py):
//   z = mean + std * noise             (noise ~ N(0, I), sample i from its own stream, SampleStreams;
//                                       z = mean when sample_posterior is false)
//   loss = rec(decode(z), x) + kl_weight * mean_n KL_n     (KL_n = DiagonalGaussian::kl, summed over C, h, w)
// VQ models (a model with quantizer(); as the LDM's VQ loss with codebook_weight):
//   loss = rec(decode(encode(x)), x) + codebook_weight * commit_loss
//   commit_loss = mean((e - z)^2) + beta mean((e - z)^2)   (the quantizer's codebook and commitment
//                                                            terms, beta = 0.25; nn/vector_quantizer.hpp)
//   with the straight-through gradient: dL/dz = dL/dz_q plus the commitment term.
// rec is the mean over all elements of |y - x| (l1) or (y - x)^2 (l2); its
// gradient is sign(y - x) / M (sign(0) = 0, as torch) or 2 (y - x) / M.
// Every term is a mean over the batch, so equal data-parallel shards average
// to the global batch's loss and gradient.
//
// last() holds the parts of the last loss (reconstruction, KL or codebook term).
#include <cmath>
#include <cstddef>
#include <span>

#include "ddpm/core/error.hpp"
#include "ddpm/core/model.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/train/objective.hpp"

namespace ddpm::train {

enum class ReconstructionLoss { l1, l2 };

struct AutoencoderLossConfig {
  ReconstructionLoss reconstruction = ReconstructionLoss::l2;
  double kl_weight = 1e-6;        // beta of the KL term (KL models; diffusers' kl_scale default)
  double codebook_weight = 1.0;   // weight of the quantizer's loss (VQ models)
  bool sample_posterior = true;   // KL models: decode a posterior sample (else its mean)

  void validate() const {
    require(kl_weight >= 0, "AutoencoderLossConfig: kl_weight must be >= 0, got ", kl_weight);
    require(codebook_weight >= 0, "AutoencoderLossConfig: codebook_weight must be >= 0, got ", codebook_weight);
  }
};

// The parts of the last loss.
struct AutoencoderLossParts {
  double reconstruction = 0;
  double kl = 0;        // mean over the batch of KL_n (KL models)
  double codebook = 0;  // the quantizer's commit_loss (VQ models)
  double total = 0;
};

template <class Model, class T>
concept KLAutoencoder = requires(Model& m, ConstTensorView<T> x) {
  m.encode(x).sample(x);
  m.encode(x).kl();
  m.posterior();
  { m.decode(x) } -> std::convertible_to<ConstTensorView<T>>;
  m.backward(x, x);
};
template <class Model, class T>
concept VQAutoencoder = requires(Model& m, ConstTensorView<T> x) {
  { m.encode(x) } -> std::convertible_to<ConstTensorView<T>>;
  { m.decode(x) } -> std::convertible_to<ConstTensorView<T>>;
  { m.quantizer().commit_loss() } -> std::convertible_to<T>;
  m.backward(x, T{});
};

template <Scalar T, class Model>
  requires(KLAutoencoder<Model, T> || VQAutoencoder<Model, T>)
class AutoencoderObjective {
 public:
  explicit AutoencoderObjective(AutoencoderLossConfig config = {}) : config_(config) { config_.validate(); }

  const AutoencoderLossConfig& config() const { return config_; }
  const AutoencoderLossParts& last() const { return last_; }

  // x [N, C, H, W]: forward, loss, backward. The conditioning is ignored.
  double loss_and_gradients(Model& model, ConstTensorView<T> x, const Conditioning<T>& /*cond*/,
                            const SampleStreams& streams) {
    require(x.rank() == 4, "AutoencoderObjective: expected images [N, C, H, W], got ", x.shape().str());
    const index_t n = x.dim(0);
    last_ = {};
    if constexpr (KLAutoencoder<Model, T>) {
      auto& posterior = model.encode(x);
      ConstTensorView<T> z;
      if (config_.sample_posterior) {
        // Sample i's noise from its own stream: independent of the data-parallel split.
        noise_.resize(posterior.mean().shape());
        const index_t per = noise_.numel() / n;
        for (index_t i = 0; i < n; ++i)
          streams.rng(i).fill_normal(std::span<T>(noise_.data() + i * per, static_cast<std::size_t>(per)));
        z = posterior.sample(noise_.cview());
      } else {
        z = posterior.mode();
      }
      const ConstTensorView<T> kl = posterior.kl();
      double kl_sum = 0;
      for (index_t i = 0; i < n; ++i) kl_sum += static_cast<double>(kl[i]);
      last_.kl = kl_sum / static_cast<double>(n);
      // The decode overwrites nothing the posterior's backward needs (mean, std, noise are its own).
      const ConstTensorView<T> y = model.decode(z);
      last_.reconstruction = reconstruction(y, x);
      dkl_.resize({n});
      dkl_.fill(static_cast<T>(config_.kl_weight / static_cast<double>(n)));
      model.backward(dy_.cview(), dkl_.cview());
      last_.total = last_.reconstruction + config_.kl_weight * last_.kl;
    } else {
      const ConstTensorView<T> y = model.decode(model.encode(x));
      last_.codebook = static_cast<double>(model.quantizer().commit_loss());
      last_.reconstruction = reconstruction(y, x);
      model.backward(dy_.cview(), static_cast<T>(config_.codebook_weight));
      last_.total = last_.reconstruction + config_.codebook_weight * last_.codebook;
    }
    return last_.total;
  }

 private:
  // The mean reconstruction error (in double) and its gradient into dy_.
  double reconstruction(ConstTensorView<T> y, ConstTensorView<T> x) {
    require(y.shape() == x.shape(), "AutoencoderObjective: the reconstruction ", y.shape().str(),
            " does not match the input ", x.shape().str(), " (out_channels must equal in_channels)");
    dy_.resize(y.shape());
    const index_t m = y.numel();
    const double inv = 1.0 / static_cast<double>(m);
    double sum = 0;
    for (index_t k = 0; k < m; ++k) {
      const double d = static_cast<double>(y[k]) - static_cast<double>(x[k]);
      if (config_.reconstruction == ReconstructionLoss::l2) {
        sum += d * d;
        dy_[k] = static_cast<T>(2 * d * inv);
      } else {
        sum += std::abs(d);
        dy_[k] = static_cast<T>(d > 0 ? inv : d < 0 ? -inv : 0.0);
      }
    }
    return sum * inv;
  }

  AutoencoderLossConfig config_;
  AutoencoderLossParts last_;
  Tensor<T> noise_, dkl_, dy_;
};

}  // namespace ddpm::train
