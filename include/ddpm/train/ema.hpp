#pragma once
// Exponential moving average of the weights (as in DDPM's released models and
// diffusers' EMAModel): ema <- d * ema + (1 - d) * params, with the warm-up
// d_t = min(decay, (1 + t) / (10 + t)) so early averages are not dominated by
// the random initialisation.
#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::train {

template <Scalar T>
class EMA {
 public:
  EMA(std::span<const T> params, double decay = 0.9999, bool warmup = true) : decay_(decay), warmup_(warmup) {
    require(decay >= 0 && decay <= 1, "EMA: decay must be in [0, 1], got ", decay);
    shadow_.assign(params.begin(), params.end());
  }

  // The decay used at the next update.
  double current_decay() const {
    if (!warmup_) return decay_;
    const double t = static_cast<double>(updates_);
    return std::min(decay_, (1.0 + t) / (10.0 + t));
  }

  void update(std::span<const T> params) {
    require(params.size() == shadow_.size(), "EMA::update: holds ", shadow_.size(), " values, got ", params.size());
    const T d = static_cast<T>(current_decay());
    for (std::size_t i = 0; i < shadow_.size(); ++i) shadow_[i] += (1 - d) * (params[i] - shadow_[i]);
    ++updates_;
  }

  std::span<const T> weights() const { return shadow_; }
  std::span<T> weights() { return shadow_; }
  // Writes the averaged weights into `params` (e.g. before sampling or saving).
  void copy_to(std::span<T> params) const {
    require(params.size() == shadow_.size(), "EMA::copy_to: holds ", shadow_.size(), " values, got ", params.size());
    std::copy(shadow_.begin(), shadow_.end(), params.begin());
  }
  std::int64_t updates() const { return updates_; }
  void set_updates(std::int64_t n) { updates_ = n; }
  double decay() const { return decay_; }

 private:
  double decay_;
  bool warmup_;
  std::int64_t updates_ = 0;
  std::vector<T, AlignedAllocator<T>> shadow_;
};

// Puts the EMA weights into the live parameters for the lifetime of the
// scope (to sample or export with them) and the trained weights back when it
// ends, also when an exception leaves it. With `ema` null it does nothing.
//
//   { train::EmaScope<float> use_ema(trainer.ema(), model.parameters().values()); sample(model); }
template <Scalar T>
class EmaScope {
 public:
  EmaScope(const EMA<T>* ema, std::span<T> params) : params_(params) {
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
