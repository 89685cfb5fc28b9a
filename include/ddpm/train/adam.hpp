#pragma once
// Adam (Kingma & Ba 2015, Algorithm 1, with bias correction) and AdamW
// (Loshchilov & Hutter 2019: decoupled weight decay), over one flat buffer.
// Matches torch.optim.Adam / AdamW step for step:
//   m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Adam's weight_decay adds wd * p to g (L2); AdamW multiplies p by (1 - lr wd) first.
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/reference.hpp"
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

// The moments live in backend B's memory space and the update is one
// ops::adam_update over the flat buffers (threaded on backend::Cpu, with
// Reference's element formula: the same bits for any thread count).
template <Scalar T, backend::Backend B = backend::Reference>
class Adam {
 public:
  using M = typename B::memory_space;

  Adam(index_t num_params, AdamConfig config)
      : config_(config), m_(Shape{num_params}), v_(Shape{num_params}) {
    config_.validate();
  }

  const AdamConfig& config() const { return config_; }
  std::int64_t step_count() const { return step_; }

  // One update with learning rate `lr` (a schedule may vary it per step).
  void step(TensorView<T, M> params, ConstTensorView<T, M> grads, double lr) {
    require(params.numel() == m_.numel() && grads.numel() == m_.numel(), "Adam::step: optimizer holds ", m_.numel(),
            " moments but got ", params.numel(), " parameters and ", grads.numel(), " gradients");
    ++step_;
    backend::AdamParams s;
    s.lr = lr;
    s.beta1 = config_.beta1;
    s.beta2 = config_.beta2;
    s.eps = config_.eps;
    s.weight_decay = config_.weight_decay;
    s.decoupled_weight_decay = config_.decoupled_weight_decay;
    s.step = step_;
    B::run(ops::adam_update, params, grads, m_.view(), v_.view(), s);
  }
  void step(std::span<T> params, std::span<const T> grads, double lr) requires std::same_as<M, Host> {
    step(TensorView<T>(params.data(), {static_cast<index_t>(params.size())}),
         ConstTensorView<T>(grads.data(), {static_cast<index_t>(grads.size())}), lr);
  }
  void step(std::span<T> params, std::span<const T> grads) requires std::same_as<M, Host> {
    step(params, grads, config_.lr);
  }

  // The moments, for checkpoints (io/checkpoint.hpp): flat views of
  // any space, and host spans.
  TensorView<T, M> exp_avg_buffer() { return m_.view(); }
  TensorView<T, M> exp_avg_sq_buffer() { return v_.view(); }
  std::span<T> exp_avg() requires std::same_as<M, Host> { return m_.span(); }
  std::span<T> exp_avg_sq() requires std::same_as<M, Host> { return v_.span(); }
  std::span<const T> exp_avg() const requires std::same_as<M, Host> { return m_.span(); }
  std::span<const T> exp_avg_sq() const requires std::same_as<M, Host> { return v_.span(); }

  void set_step_count(std::int64_t s) {
    require(s >= 0, "Adam: step count must be >= 0, got ", s);
    step_ = s;
  }

 private:
  AdamConfig config_;
  Tensor<T, M> m_, v_;
  std::int64_t step_ = 0;
};

}  // namespace ddpm::train
