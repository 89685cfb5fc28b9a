#pragma once
// The denoising loss: a per-sample weighted mean squared error
//   L = 1/N sum_i w_i * mean_j (pred_ij - target_ij)^2
// (DDPM's "simple" loss, eq. 14, when every w_i = 1), and its gradient.
// Min-SNR-gamma weighting (Hang et al. 2023) picks w_i from the SNR of each
// sample's timestep; see min_snr_weight.
#include <algorithm>
#include <cmath>
#include <span>

#include "ddpm/backend/backend.hpp"
#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/prediction.hpp"

namespace ddpm::train {

// Returns the loss; writes dL/dpred into `dpred` (same shape as pred), with
// ops::mse_loss on backend B (the tensors are in its memory space).
// `sample_weights` is empty (all 1) or has one weight per batch element.
template <backend::Backend B, Scalar T, class M>
double weighted_mse(ConstTensorView<T, M> pred, ConstTensorView<T, M> target, std::span<const double> sample_weights,
                    TensorView<T, M> dpred) {
  require_same_shape(pred.shape(), target.shape(), "weighted_mse (prediction vs target)");
  require_same_shape(pred.shape(), dpred.shape(), "weighted_mse (prediction vs gradient buffer)");
  require(pred.rank() >= 1 && pred.dim(0) > 0, "weighted_mse: empty batch");
  require(sample_weights.empty() || static_cast<index_t>(sample_weights.size()) == pred.dim(0), "weighted_mse: ",
          sample_weights.size(), " sample weights for a batch of ", pred.dim(0));
  return B::run(ops::mse_loss, pred, target, sample_weights, dpred);
}
// The same on host tensors (backend::Reference).
template <Scalar T>
double weighted_mse(ConstTensorView<T> pred, ConstTensorView<T> target, std::span<const double> sample_weights,
                    TensorView<T> dpred) {
  return weighted_mse<backend::Reference>(pred, target, sample_weights, dpred);
}

// Min-SNR-gamma weight for a sample whose timestep has signal-to-noise ratio
// `snr` = abar / (1 - abar). gamma <= 0 disables weighting (returns 1).
// For epsilon targets the weight is min(snr, gamma) / snr, for v targets
// min(snr, gamma) / (snr + 1), for x0 targets min(snr, gamma).
inline double min_snr_weight(double snr, double gamma, PredictionType target) {
  if (gamma <= 0) return 1.0;
  require(snr >= 0, "min_snr_weight: snr must be >= 0, got ", snr);
  const double clipped = std::min(snr, gamma);
  switch (target) {
    case PredictionType::epsilon:
      require(snr > 0, "min_snr_weight: snr is 0 (zero-terminal-SNR timestep) with an epsilon target; use v_prediction");
      return clipped / snr;
    case PredictionType::v_prediction: return clipped / (snr + 1.0);
    case PredictionType::sample: return clipped;
  }
  return 1.0;
}

}  // namespace ddpm::train
