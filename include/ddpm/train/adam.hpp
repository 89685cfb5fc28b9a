#pragma once
// Adam (Kingma & Ba 2015, Algorithm 1, with bias correction) and AdamW
// (Loshchilov & Hutter 2019: decoupled weight decay), over one flat buffer.
// Matches torch.optim.Adam / AdamW step for step:
//   m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Adam's weight_decay adds wd * p to g (L2); AdamW multiplies p by (1 - lr wd) first.
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::train {

struct AdamConfig {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // true: AdamW

  static AdamConfig adamw(double lr, double weight_decay = 1e-2) {
    return {lr, 0.9, 0.999, 1e-8, weight_decay, true};
  }
  void validate() const {
    require(lr >= 0 && std::isfinite(lr), "Adam: lr must be finite and >= 0, got ", lr);
    require(beta1 >= 0 && beta1 < 1, "Adam: beta1 must be in [0, 1), got ", beta1);
    require(beta2 >= 0 && beta2 < 1, "Adam: beta2 must be in [0, 1), got ", beta2);
    require(eps > 0, "Adam: eps must be > 0, got ", eps);
    require(weight_decay >= 0, "Adam: weight_decay must be >= 0, got ", weight_decay);
  }
};

template <Scalar T>
class Adam {
 public:
  Adam(index_t num_params, AdamConfig config) : config_(config) {
    config_.validate();
    m_.assign(static_cast<std::size_t>(num_params), T{});
    v_.assign(static_cast<std::size_t>(num_params), T{});
  }

  const AdamConfig& config() const { return config_; }
  std::int64_t step_count() const { return step_; }

  // One update with learning rate `lr` (a schedule may vary it per step).
  void step(std::span<T> params, std::span<const T> grads, double lr) {
    require(params.size() == m_.size() && grads.size() == m_.size(), "Adam::step: optimizer holds ", m_.size(),
            " moments but got ", params.size(), " parameters and ", grads.size(), " gradients");
    ++step_;
    const T b1 = static_cast<T>(config_.beta1), b2 = static_cast<T>(config_.beta2);
    const double bc1 = 1.0 - std::pow(config_.beta1, static_cast<double>(step_));
    const double bc2 = 1.0 - std::pow(config_.beta2, static_cast<double>(step_));
    const T step_size = static_cast<T>(lr / bc1);
    const T inv_sqrt_bc2 = static_cast<T>(1.0 / std::sqrt(bc2));
    const T eps = static_cast<T>(config_.eps), wd = static_cast<T>(config_.weight_decay);
    const T decay = static_cast<T>(1.0 - lr * config_.weight_decay);
    const bool decoupled = config_.decoupled_weight_decay;
    T* m = m_.data();
    T* v = v_.data();
    const std::size_t n = params.size();
    for (std::size_t i = 0; i < n; ++i) {
      T g = grads[i];
      T p = params[i];
      if (decoupled) p *= decay;
      else g += wd * p;
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      params[i] = p - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
    }
  }
  void step(std::span<T> params, std::span<const T> grads) { step(params, grads, config_.lr); }

  // The moments, for checkpoints (io/checkpoint.hpp).
  std::span<T> exp_avg() { return m_; }
  std::span<T> exp_avg_sq() { return v_; }
  std::span<const T> exp_avg() const { return m_; }
  std::span<const T> exp_avg_sq() const { return v_; }
  void set_step_count(std::int64_t s) {
    require(s >= 0, "Adam: step count must be >= 0, got ", s);
    step_ = s;
  }

 private:
  AdamConfig config_;
  std::vector<T, AlignedAllocator<T>> m_, v_;
  std::int64_t step_ = 0;
};

}  // namespace ddpm::train
