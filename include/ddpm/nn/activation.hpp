#pragma once
// SiLU (swish): y = x * sigmoid(x), elementwise on any shape. No parameters.
#include <string>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/layer_base.hpp"

namespace ddpm::nn {

template <Scalar T, backend::Backend B>
class SiLU : public LayerBase {
 public:
  using M = typename B::memory_space;
  using Buffer = Tensor<T, M>;

  explicit SiLU(const std::string& prefix = "silu") : LayerBase(prefix) {}

  // `out` (optional, x's shape): where to write y instead of the layer's own buffer.
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, TensorView<T, M> out = {}) {
    const TensorView<T, M> y = output_buffer(y_, x.shape(), out);
    B::run(ops::silu_forward, x, y);
    x_ = mode_ == Mode::Training ? x : ConstTensorView<T, M>{};
    return y;
  }

  // `out` (optional): where to write dx instead of the layer's own buffer.
  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy, TensorView<T, M> out = {}) {
    check_backward(x_.data() != nullptr);
    check_shape("output gradient", dy.shape(), x_.shape());
    const TensorView<T, M> dx = output_buffer(dx_, x_.shape(), out);
    B::run(ops::silu_backward, x_, dy, dx);
    return dx;
  }

  void init(Rng&) {}

 private:
  ConstTensorView<T, M> x_;
  Buffer y_, dx_;
};

}  // namespace ddpm::nn
