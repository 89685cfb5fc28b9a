#pragma once
// Exponential moving average of the weights (as in DDPM's released models and
// diffusers' EMAModel): ema <- d * ema + (1 - d) * params, with the warm-up
// d_t = min(decay, (1 + t) / (10 + t)) so early averages are not dominated by
// the random initialisation.
#include <algorithm>
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

// The shadow weights live in backend B's memory space; each update is one
// ops::ema_update.
template <Scalar T, backend::Backend B = backend::Reference>
class EMA {
 public:
  using M = typename B::memory_space;

  EMA(ConstTensorView<T, M> params, double decay = 0.9999, bool warmup = true)
      : decay_(check_decay(decay)), warmup_(warmup), shadow_(Shape{params.numel()}) {
    B::run(ops::copy, params, shadow_.view());
  }
  EMA(std::span<const T> params, double decay = 0.9999, bool warmup = true) requires std::same_as<M, Host>
      : EMA(ConstTensorView<T>(params.data(), {static_cast<index_t>(params.size())}), decay, warmup) {}

  // The decay used at the next update.
  double current_decay() const {
    if (!warmup_) return decay_;
    const double t = static_cast<double>(updates_);
    return std::min(decay_, (1.0 + t) / (10.0 + t));
  }

  void update(ConstTensorView<T, M> params) {
    require(params.numel() == shadow_.numel(), "EMA::update: holds ", shadow_.numel(), " values, got ",
            params.numel());
    B::run(ops::ema_update, params, static_cast<T>(current_decay()), shadow_.view());
    ++updates_;
  }
  void update(std::span<const T> params) requires std::same_as<M, Host> {
    update(ConstTensorView<T>(params.data(), {static_cast<index_t>(params.size())}));
  }

  ConstTensorView<T, M> weights_buffer() const { return shadow_.view(); }
  TensorView<T, M> weights_buffer() { return shadow_.view(); }
  std::span<const T> weights() const requires std::same_as<M, Host> { return shadow_.span(); }
  std::span<T> weights() requires std::same_as<M, Host> { return shadow_.span(); }

  // Writes the averaged weights into `params` (e.g. before sampling or saving).
  void copy_to(TensorView<T, M> params) const {
    require(params.numel() == shadow_.numel(), "EMA::copy_to: holds ", shadow_.numel(), " values, got ",
            params.numel());
    B::run(ops::copy, shadow_.view(), params);
  }
  void copy_to(std::span<T> params) const requires std::same_as<M, Host> {
    copy_to(TensorView<T>(params.data(), {static_cast<index_t>(params.size())}));
  }

  std::int64_t updates() const { return updates_; }
  void set_updates(std::int64_t n) { updates_ = n; }
  double decay() const { return decay_; }

 private:
  static double check_decay(double decay) {
    require(decay >= 0 && decay <= 1, "EMA: decay must be in [0, 1], got ", decay);
    return decay;
  }

  double decay_;
  bool warmup_;
  std::int64_t updates_ = 0;
  Tensor<T, M> shadow_;
};

// Puts the EMA weights into the live parameters for the lifetime of the
// scope (to sample or export with them) and the trained weights back when it
// ends, also when an exception leaves it. With `ema` null it does nothing.
//
//   { train::EmaScope<float> use_ema(trainer.ema(), model.parameters().values()); sample(model); }
template <Scalar T>
class EmaScope {
 public:
  template <class B>
    requires std::same_as<typename B::memory_space, Host>
  EmaScope(const EMA<T, B>* ema, std::span<T> params) : params_(params) {
    if (!ema) return;
    live_.assign(params.begin(), params.end());
    ema->copy_to(params);
  }
  ~EmaScope() { std::copy(live_.begin(), live_.end(), params_.begin()); }
  EmaScope(const EmaScope&) = delete;
  EmaScope& operator=(const EmaScope&) = delete;

 private:
  std::span<T> params_;
  std::vector<T, AlignedAllocator<T>> live_;  // empty: nothing to restore
};

}  // namespace ddpm::train
