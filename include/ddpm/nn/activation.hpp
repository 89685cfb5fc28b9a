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

  ConstTensorView<T> forward(ConstTensorView<T> x) {
    ensure_shape(y_, x.shape());
    B::silu_forward(x, TensorView<T>(y_.view()));
    x_ = mode_ == Mode::Training ? x : ConstTensorView<T>{};
    return y_.view();
  }

  ConstTensorView<T> backward(ConstTensorView<T> dy) {
    check_backward(x_.data() != nullptr);
    check_shape("output gradient", dy.shape(), x_.shape());
    ensure_shape(dx_, x_.shape());
    B::silu_backward(x_, dy, TensorView<T>(dx_.view()));
    return dx_.view();
  }

  void init(Rng&) {}

 private:
  ConstTensorView<T> x_;
  Buffer y_, dx_;
};

}  // namespace ddpm::nn
