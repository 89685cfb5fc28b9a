#pragma once
// PyTorch's default parameter initialisations, drawn from ddpm::Rng.
#include <algorithm>
#include <cmath>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::nn {

// U(-bound, bound) for every element.
template <Scalar T>
void init_uniform(TensorView<T> t, double bound, Rng& rng) {
  rng.fill_uniform(t.span(), -bound, bound);
}

// nn.Linear / nn.Conv2d reset_parameters(): kaiming_uniform_(a = sqrt(5)) on the
// weight is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and so is the bias. fan_in is
// in_features, or in_channels * kh * kw. An empty bias is skipped.
template <Scalar T>
void init_linear_default(TensorView<T> weight, TensorView<T> bias, index_t fan_in, Rng& rng) {
  const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
  init_uniform(weight, bound, rng);
  if (bias.data()) init_uniform(bias, bound, rng);
}

// N(mean, std) for every element (nn.Embedding: N(0, 1)).
template <Scalar T>
void init_normal(TensorView<T> t, Rng& rng, double mean = 0.0, double stddev = 1.0) {
  rng.fill_normal(t.span(), mean, stddev);
}

template <Scalar T>
void init_constant(TensorView<T> t, T value) {
  std::fill(t.begin(), t.end(), value);
}

// The same for a parameter in backend B's memory space: the values are drawn
// on the host from the same stream (so a seed gives the same weights on every
// backend) and copied in with ops::copy_from_host.
namespace init_detail {
template <backend::Backend B, Scalar T, class M, class Draw>
void draw_into(TensorView<T, M> t, Draw draw) {
  if constexpr (std::same_as<M, Host>) {
    draw(t);
  } else {
    Tensor<T> host(t.shape());
    draw(host.view());
    B::run(ops::copy_from_host, host.cview(), t);
  }
}
}  // namespace init_detail

template <backend::Backend B, Scalar T, class M>
void init_uniform(TensorView<T, M> t, double bound, Rng& rng) {
  init_detail::draw_into<B>(t, [&](TensorView<T> h) { init_uniform(h, bound, rng); });
}
template <backend::Backend B, Scalar T, class M>
void init_linear_default(TensorView<T, M> weight, TensorView<T, M> bias, index_t fan_in, Rng& rng) {
  const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
  init_uniform<B>(weight, bound, rng);
  if (bias.data()) init_uniform<B>(bias, bound, rng);
}
template <backend::Backend B, Scalar T, class M>
void init_normal(TensorView<T, M> t, Rng& rng, double mean = 0.0, double stddev = 1.0) {
  init_detail::draw_into<B>(t, [&](TensorView<T> h) { init_normal(h, rng, mean, stddev); });
}
template <backend::Backend B, Scalar T, class M>
void init_constant(TensorView<T, M> t, T value) {
  B::run(ops::fill, value, t);
}

}  // namespace ddpm::nn
