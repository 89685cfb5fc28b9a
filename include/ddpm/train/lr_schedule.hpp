#pragma once
// Learning rate per step: linear warm-up from 0, then cosine decay to
// min_lr over the remaining steps (Loshchilov & Hutter, SGDR), or constant.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>

#include "ddpm/core/error.hpp"

namespace ddpm::train {

struct LrSchedule {
  double base_lr = 1e-4;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 0;  // 0: no decay after warm-up
  double min_lr = 0.0;

  void validate() const {
    require(base_lr >= 0 && std::isfinite(base_lr), "LrSchedule: base_lr must be finite and >= 0, got ", base_lr);
    require(warmup_steps >= 0, "LrSchedule: warmup_steps must be >= 0, got ", warmup_steps);
    require(total_steps >= 0, "LrSchedule: total_steps must be >= 0, got ", total_steps);
    require(total_steps == 0 || total_steps > warmup_steps, "LrSchedule: total_steps (", total_steps,
            ") must exceed warmup_steps (", warmup_steps, ")");
    require(min_lr >= 0 && min_lr <= base_lr, "LrSchedule: min_lr must be in [0, base_lr], got ", min_lr);
  }

  // The rate for 0-based step `step`.
  double operator()(std::int64_t step) const {
    if (step < warmup_steps) return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    if (total_steps == 0) return base_lr;
    const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) /
                                              static_cast<double>(total_steps - warmup_steps));
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + std::cos(std::numbers::pi * progress));
  }
};

}  // namespace ddpm::train
