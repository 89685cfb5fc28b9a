#pragma once
// Softmax cross-entropy for the digit classifier (classifier.hpp):
//   L = 1/N sum_i -log softmax(logits_i)[label_i]
// and its gradient dL/dlogits = (softmax(logits) - onehot(label)) / N.
// The softmax is computed with the row maximum subtracted (no overflow).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"

namespace mnist {

using ddpm::ConstTensorView, ddpm::TensorView, ddpm::index_t, ddpm::require, ddpm::require_same_shape;

// logits [N, K], labels N values in [0, K). Returns the mean loss; writes
// dL/dlogits into `dlogits` (same shape) when it is not empty.
template <ddpm::Scalar T>
double softmax_cross_entropy(ConstTensorView<T> logits, std::span<const std::int64_t> labels,
                             TensorView<T> dlogits = {}) {
  require(logits.rank() == 2 && logits.dim(0) > 0 && logits.dim(1) > 0,
          "softmax_cross_entropy: expected logits [N, K], got ", logits.shape().str());
  const index_t n = logits.dim(0), k = logits.dim(1);
  require(static_cast<index_t>(labels.size()) == n, "softmax_cross_entropy: ", labels.size(),
          " labels for a batch of ", n);
  const bool grad = dlogits.data() != nullptr;
  if (grad) require_same_shape(logits.shape(), dlogits.shape(), "softmax_cross_entropy (logits vs gradient)");
  double loss = 0;
  for (index_t i = 0; i < n; ++i) {
    const T* z = logits.data() + i * k;
    const std::int64_t y = labels[static_cast<std::size_t>(i)];
    require(y >= 0 && y < k, "softmax_cross_entropy: label ", y, " at index ", i, " is outside [0, ", k, ")");
    const double m = static_cast<double>(*std::max_element(z, z + k));
    double sum = 0;
    for (index_t j = 0; j < k; ++j) sum += std::exp(static_cast<double>(z[j]) - m);
    const double log_sum = std::log(sum);
    loss += log_sum - (static_cast<double>(z[y]) - m);
    if (grad) {
      T* g = dlogits.data() + i * k;
      for (index_t j = 0; j < k; ++j) {
        const double p = std::exp(static_cast<double>(z[j]) - m - log_sum);
        g[j] = static_cast<T>((p - (j == y ? 1.0 : 0.0)) / static_cast<double>(n));
      }
    }
  }
  return loss / static_cast<double>(n);
}

// The index of the largest logit of each row.
template <ddpm::Scalar T>
std::int64_t argmax_row(ConstTensorView<T> logits, index_t row) {
  const index_t k = logits.dim(1);
  const T* z = logits.data() + row * k;
  return static_cast<std::int64_t>(std::max_element(z, z + k) - z);
}

}  // namespace mnist
