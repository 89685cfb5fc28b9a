#pragma once
// diffusers' Upsample2D (as UNet2DModel uses it): nearest-neighbour 2x
// upsampling of NCHW, then (use_conv) a 3x3 convolution with padding 1.
// Parameters (use_conv): "<prefix>.conv.weight" [Co, C, 3, 3], "<prefix>.conv.bias" [Co].
#include <optional>
#include <string>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/composite.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/layer_base.hpp"
#include "ddpm/nn/workspace.hpp"
#include "ddpm/core/parameters.hpp"

namespace ddpm::nn {

template <Scalar T, backend::Backend B>
class Upsample2D : public LayerBase {
 public:
  using M = typename B::memory_space;
  using Buffer = Tensor<T, M>;

  // out_channels 0: same as channels (must equal channels without conv).
  Upsample2D(Parameters<T, M>& params, const std::string& prefix, index_t channels, bool use_conv = true,
             index_t out_channels = 0)
      : LayerBase(prefix), c_(channels) {
    const index_t co = out_channels > 0 ? out_channels : channels;
    check(channels > 0, "channels must be > 0, got ", channels);
    check(use_conv || co == channels, "out_channels (", co, ") differs from channels (", channels,
          ") but there is no conv");
    if (use_conv) conv_.emplace(params, join_name(prefix, "conv"), channels, co, 3, 1, 1);
  }

  // x: [N, C, H, W] -> [N, Co, 2H, 2W]. In inference with the conv, the
  // upsampled image (consumed at once by the conv) goes to workspace slot 0.
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x) {
    check(x.rank() == 4 && x.dim(1) == c_, "expected input [N, ", c_, ", H, W], got ", x.shape().str());
    const Shape us{x.dim(0), c_, 2 * x.dim(2), 2 * x.dim(3)};
    const TensorView<T, M> up =
        conv_ && mode_ == Mode::Inference ? workspace<T, M>(0, us) : output_buffer(up_, us, {});
    B::run(ops::upsample_nearest2x_forward, x, up);
    x_shape_ = x.shape();
    have_forward_ = mode_ == Mode::Training;
    return conv_ ? conv_->forward(up) : ConstTensorView<T, M>(up);
  }

  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy) {
    check_backward(have_forward_);
    const ConstTensorView<T, M> dup = conv_ ? conv_->backward(dy) : dy;
    check_shape("output gradient", dup.shape(), up_.shape());
    ensure_shape(dx_, x_shape_);
    B::run(ops::upsample_nearest2x_backward, dup, TensorView<T, M>(dx_.view()));
    return dx_.view();
  }

  template <class F>
  void for_each_child(F&& f) {
    visit_children(f, conv_);
  }
  void init(Rng& rng) { init_children(*this, rng); }
  void set_mode(Mode m) { set_mode_recursive(*this, m); }

  bool has_conv() const { return conv_.has_value(); }
  Conv2d<T, B>& conv() { return *conv_; }

 private:
  index_t c_;
  std::optional<Conv2d<T, B>> conv_;
  Shape x_shape_;
  bool have_forward_ = false;
  Buffer up_, dx_;
};

}  // namespace ddpm::nn
