#pragma once
// nn.Conv2d on NCHW: square kernel, one stride, zero padding per side
// (backend::Conv2dParams; symmetric(stride, pad) for PyTorch's usual padding).
// Parameters: "<prefix>.weight" [Co, Ci, k, k], "<prefix>.bias" [Co] (optional).
#include <string>
#include <utility>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/init.hpp"
#include "ddpm/nn/layer_base.hpp"
#include "ddpm/core/parameters.hpp"

namespace ddpm::nn {

template <Scalar T, backend::Backend B>
class Conv2d : public LayerBase {
 public:
  using M = typename B::memory_space;
  using Buffer = Tensor<T, M>;

  Conv2d(Parameters<T, M>& params, const std::string& prefix, index_t in_channels, index_t out_channels,
         index_t kernel_size, backend::Conv2dParams conv = {}, bool bias = true)
      : LayerBase(prefix), params_(&params), ci_(in_channels), co_(out_channels), k_(kernel_size), conv_(conv) {
    check(in_channels > 0 && out_channels > 0 && kernel_size > 0,
          "channels and kernel_size must be > 0, got in ", in_channels, ", out ", out_channels, ", kernel ",
          kernel_size);
    check(conv.stride > 0 && conv.pad_top >= 0 && conv.pad_bottom >= 0 && conv.pad_left >= 0 && conv.pad_right >= 0,
          "stride must be > 0 and padding >= 0");
    weight_ = params.add(join_name(prefix, "weight"), {out_channels, in_channels, kernel_size, kernel_size});
    if (bias) bias_ = params.add(join_name(prefix, "bias"), {out_channels});
  }
  // PyTorch's Conv2d(in, out, kernel_size, stride, padding).
  Conv2d(Parameters<T, M>& params, const std::string& prefix, index_t in_channels, index_t out_channels,
         index_t kernel_size, index_t stride, index_t padding, bool bias = true)
      : Conv2d(params, prefix, in_channels, out_channels, kernel_size,
               backend::Conv2dParams::symmetric(stride, padding), bias) {}

  // x: [N, Ci, H, W] -> [N, Co, OH, OW]. `out` (optional, that shape): where
  // to write y instead of the layer's own buffer.
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, TensorView<T, M> out = {}) {
    check(x.rank() == 4 && x.dim(1) == ci_, "expected input [N, ", ci_, ", H, W], got ", x.shape().str());
    const index_t ph = x.dim(2) + conv_.pad_top + conv_.pad_bottom, pw = x.dim(3) + conv_.pad_left + conv_.pad_right;
    check(ph >= k_ && pw >= k_, "input ", x.shape().str(), " is smaller than the ", k_, "x", k_,
          " kernel after padding");
    y_shape_ = {x.dim(0), co_, conv_.out_h(x.dim(2), k_), conv_.out_w(x.dim(3), k_)};
    const TensorView<T, M> y = output_buffer(y_, y_shape_, out);
    B::run(ops::conv2d_forward, x, weight(), bias(), conv_, y);
    x_ = mode_ == Mode::Training ? x : ConstTensorView<T, M>{};
    return y;
  }

  // `out` (optional): where to write dx instead of the layer's own buffer.
  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy, TensorView<T, M> out = {}) {
    check_backward(x_.data() != nullptr);
    check_shape("output gradient", dy.shape(), y_shape_);
    const TensorView<T, M> dx = output_buffer(dx_, x_.shape(), out);
    B::run(ops::conv2d_backward, x_, weight(), dy, conv_, dx, params_->grad(weight_),
           bias_ >= 0 ? params_->grad(bias_) : TensorView<T, M>{});
    return dx;
  }

  void init(Rng& rng) {
    init_linear_default<B>(params_->value(weight_), bias_ >= 0 ? params_->value(bias_) : TensorView<T, M>{},
                        ci_ * k_ * k_, rng);
  }

  index_t in_channels() const { return ci_; }
  index_t out_channels() const { return co_; }
  index_t kernel_size() const { return k_; }
  const backend::Conv2dParams& conv_params() const { return conv_; }
  bool has_bias() const { return bias_ >= 0; }
  ParamId weight_id() const { return weight_; }
  ParamId bias_id() const { return bias_; }  // -1 without bias
  ConstTensorView<T, M> weight() const { return std::as_const(*params_).value(weight_); }
  ConstTensorView<T, M> bias() const {
    return bias_ >= 0 ? std::as_const(*params_).value(bias_) : ConstTensorView<T, M>{};
  }

 private:
  Parameters<T, M>* params_;
  index_t ci_, co_, k_;
  backend::Conv2dParams conv_;
  ParamId weight_ = -1, bias_ = -1;
  ConstTensorView<T, M> x_;
  Shape y_shape_;
  Buffer y_, dx_;
};

}  // namespace ddpm::nn
