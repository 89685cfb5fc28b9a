#pragma once
// diffusers' Downsample2D with use_conv (as UNet2DModel uses it): a 3x3
// convolution with stride 2. padding > 0 pads every side by `padding`;
// padding 0 (diffusers' downsample_padding = 0, google/ddpm-*) pads one row
// at the bottom and one column at the right, then convolves without padding.
// Parameters: "<prefix>.conv.weight" [Co, C, 3, 3], "<prefix>.conv.bias" [Co].
#include <string>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/composite.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/layer_base.hpp"
#include "ddpm/core/parameters.hpp"

namespace ddpm::nn {

// The convolution geometry of Downsample2D for diffusers' `padding`.
constexpr backend::Conv2dParams downsample_conv_params(index_t padding) {
  return padding == 0 ? backend::Conv2dParams{2, 0, 1, 0, 1} : backend::Conv2dParams::symmetric(2, padding);
}

template <Scalar T, backend::Backend B>
class Downsample2D : public LayerBase {
 public:
  using M = typename B::memory_space;

  // out_channels 0: same as channels.
  Downsample2D(Parameters<T, M>& params, const std::string& prefix, index_t channels, index_t out_channels = 0,
               index_t padding = 1)
      : LayerBase(prefix),
        conv_(params, join_name(prefix, "conv"), channels, out_channels > 0 ? out_channels : channels, 3,
              downsample_conv_params(padding)) {
    check(padding >= 0, "padding must be >= 0, got ", padding);
  }

  // x: [N, C, H, W] -> [N, Co, OH, OW] (H = 2k or 2k - 1 gives OH = k with padding 1).
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x) { return conv_.forward(x); }
  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy) { return conv_.backward(dy); }

  template <class F>
  void for_each_child(F&& f) {
    visit_children(f, conv_);
  }
  void init(Rng& rng) { init_children(*this, rng); }
  void set_mode(Mode m) { set_mode_recursive(*this, m); }
  Conv2d<T, B>& conv() { return conv_; }

 private:
  Conv2d<T, B> conv_;
};

}  // namespace ddpm::nn
