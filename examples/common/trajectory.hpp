#pragma once
// x_t kept at evenly spaced points of a sampling loop, for a picture of the
// reverse process: a progress callback for sample_loop (sampling/loop.hpp).
#include <algorithm>
#include <utility>

#include "ddpm/core/tensor.hpp"

namespace examples {

// A strip of `snapshots` columns per sample, [n * snapshots, C, H, W],
// sample-major: column 0 is x_T, column k (1 .. snapshots - 1) the sample
// after step round(k * total / (snapshots - 1)), so the last is the result.
class TrajectoryStrip {
 public:
  TrajectoryStrip(ddpm::ConstTensorView<float> x_T, int snapshots)
      : n_(x_T.dim(0)), per_(x_T.numel() / x_T.dim(0)), snapshots_(snapshots) {
    ddpm::Shape shape = x_T.shape();
    shape[0] = n_ * snapshots;
    strip_ = ddpm::Tensor<float>(shape);
    keep(0, x_T);
  }

  void operator()(ddpm::index_t i, ddpm::index_t total, double, ddpm::ConstTensorView<float> x) {
    while (next_ < snapshots_ && i + 1 >= (next_ * total + (snapshots_ - 2)) / (snapshots_ - 1)) keep(next_++, x);
  }

  const ddpm::Tensor<float>& strip() const { return strip_; }
  ddpm::Tensor<float> take() && { return std::move(strip_); }

 private:
  void keep(int column, ddpm::ConstTensorView<float> x) {
    for (ddpm::index_t i = 0; i < n_; ++i)
      std::copy(x.data() + i * per_, x.data() + (i + 1) * per_, strip_.data() + (i * snapshots_ + column) * per_);
  }

  ddpm::index_t n_, per_;
  int snapshots_, next_ = 1;
  ddpm::Tensor<float> strip_;
};

}  // namespace examples
