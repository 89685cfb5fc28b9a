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
  using Buffer = Tensor<T, typename B::memory_space>;

  explicit SiLU(const std::string& prefix = "silu") : LayerBase(prefix) {}

  // `out` (optional, x's shape): where to write y instead of the layer's own buffer.
  ConstTensorView<T> forward(ConstTensorView<T> x, TensorView<T> out = {}) {
    const TensorView<T> y = output_buffer(y_, x.shape(), out);
    B::run(ops::silu_forward, x, y);
    x_ = mode_ == Mode::Training ? x : ConstTensorView<T>{};
    return y;
  }

  // `out` (optional): where to write dx instead of the layer's own buffer.
  ConstTensorView<T> backward(ConstTensorView<T> dy, TensorView<T> out = {}) {
    check_backward(x_.data() != nullptr);
    check_shape("output gradient", dy.shape(), x_.shape());
    const TensorView<T> dx = output_buffer(dx_, x_.shape(), out);
    B::run(ops::silu_backward, x_, dy, dx);
    return dx;
  }

  void init(Rng&) {}

 private:
  ConstTensorView<T> x_;
  Buffer y_, dx_;
};

}  // namespace ddpm::nn
