#pragma once
// nn.Linear: y[..., out] = x[..., in] W^T + b, W [out, in] (PyTorch layout).
// Parameters: "<prefix>.weight" [out, in], "<prefix>.bias" [out] (optional).
#include <string>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/init.hpp"
#include "ddpm/nn/layer_base.hpp"
#include "ddpm/core/parameters.hpp"

namespace ddpm::nn {

template <Scalar T, backend::Backend B>
class Linear : public LayerBase {
 public:
  using M = typename B::memory_space;
  using Buffer = Tensor<T, M>;

  Linear(Parameters<T, M>& params, const std::string& prefix, index_t in_features, index_t out_features,
         bool bias = true)
      : LayerBase(prefix), params_(&params), in_(in_features), out_(out_features) {
    check(in_features > 0 && out_features > 0, "in_features and out_features must be > 0, got ", in_features, " and ",
          out_features);
    weight_ = params.add(join_name(prefix, "weight"), {out_features, in_features});
    if (bias) bias_ = params.add(join_name(prefix, "bias"), {out_features});
  }

  // x: [..., in] (any leading dims) -> [..., out]. `out` (optional, that
  // shape): where to write y instead of the layer's own buffer.
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, TensorView<T, M> out = {}) {
    check(x.rank() >= 1 && x.dim(-1) == in_, "expected input [..., ", in_, "], got ", x.shape().str());
    Shape s = x.shape();
    s[s.rank() - 1] = out_;
    y_view_ = output_buffer(y_, s, out);
    B::run(ops::linear_forward, x, weight(), bias(), y_view_);
    x_ = mode_ == Mode::Training ? x : ConstTensorView<T, M>{};
    return y_view_;
  }

  // dy: like the last output. Accumulates dW, db; returns dx (in `out` when given).
  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy, TensorView<T, M> out = {}) {
    check_backward(x_.data() != nullptr);
    check_shape("output gradient", dy.shape(), y_view_.shape());
    const TensorView<T, M> dx = output_buffer(dx_, x_.shape(), out);
    B::run(ops::linear_backward, x_, weight(), dy, dx, params_->grad(weight_),
           bias_ >= 0 ? params_->grad(bias_) : TensorView<T, M>{});
    return dx;
  }

  void init(Rng& rng) {
    init_linear_default<B>(params_->value(weight_), bias_ >= 0 ? params_->value(bias_) : TensorView<T, M>{}, in_, rng);
  }

  // The last forward's output (valid until the next forward).
  ConstTensorView<T, M> output() const { return y_view_; }
  index_t in_features() const { return in_; }
  index_t out_features() const { return out_; }
  bool has_bias() const { return bias_ >= 0; }
  ParamId weight_id() const { return weight_; }
  ParamId bias_id() const { return bias_; }  // -1 without bias
  ConstTensorView<T, M> weight() const { return std::as_const(*params_).value(weight_); }
  ConstTensorView<T, M> bias() const {
    return bias_ >= 0 ? std::as_const(*params_).value(bias_) : ConstTensorView<T, M>{};
  }

 private:
  Parameters<T, M>* params_;
  index_t in_, out_;
  ParamId weight_ = -1, bias_ = -1;
  ConstTensorView<T, M> x_;
  TensorView<T, M> y_view_;
  Buffer y_, dx_;
};

}  // namespace ddpm::nn
