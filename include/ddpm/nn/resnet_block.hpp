#pragma once
// diffusers' ResnetBlock2D (act_fn SiLU):
//   h = conv1(SiLU(norm1(x)))                            (norm and SiLU fused: one pass)
//   e = time_emb_proj(SiLU(temb))                        [N, C] or [N, 2C]
//   default:     h = norm2(h + e[:, :, None, None])
//   scale_shift: h = norm2(h) * (1 + e[:, :C]) + e[:, C:]
//   h = conv2(dropout(SiLU(h)))                          (dropout: nn/dropout.hpp; identity in inference)
//   y = (shortcut(x) + h) / output_scale_factor           shortcut: 1x1 conv_shortcut or identity
// Parameters under the prefix: norm1, conv1, time_emb_proj (when
// temb_channels > 0), norm2, conv2, conv_shortcut (when used).
#include <algorithm>
#include <optional>
#include <string>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/composite.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/dropout.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "ddpm/nn/layer_base.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

enum class TimeEmbeddingNorm { Default, ScaleShift };  // diffusers' "default", "scale_shift"

struct ResnetBlock2DOptions {
  index_t in_channels = 0;
  index_t out_channels = 0;    // 0: same as in_channels
  index_t temb_channels = 512; // 0: no time embedding (no time_emb_proj)
  int groups = 32;
  int groups_out = 0;          // 0: same as groups
  double eps = 1e-6;
  TimeEmbeddingNorm time_embedding_norm = TimeEmbeddingNorm::Default;
  double output_scale_factor = 1.0;
  std::optional<bool> use_in_shortcut = std::nullopt;  // default: in_channels != out_channels
  bool conv_shortcut_bias = true;
  double dropout = 0.0;                      // diffusers' dropout, in [0, 1)
  DropoutStreams* dropout_streams = nullptr; // the model's per-sample streams (needed when dropout > 0)
};

template <Scalar T, backend::Backend B>
class ResnetBlock2D : public LayerBase {
 public:
  using M = typename B::memory_space;
  using Buffer = Tensor<T, M>;

  ResnetBlock2D(Parameters<T, M>& params, const std::string& prefix, const ResnetBlock2DOptions& opt)
      : LayerBase(prefix),
        ci_(opt.in_channels),
        co_(opt.out_channels > 0 ? opt.out_channels : opt.in_channels),
        temb_ch_(opt.temb_channels),
        scale_shift_(opt.time_embedding_norm == TimeEmbeddingNorm::ScaleShift),
        osf_(opt.output_scale_factor),
        norm1_(params, join_name(prefix, "norm1"), opt.groups, ci_, opt.eps, true, PostActivation::SiLU),
        conv1_(params, join_name(prefix, "conv1"), ci_, co_, 3, 1, 1),
        // (scale_shift modulates between norm2 and the SiLU: no fusion there.)
        norm2_(params, join_name(prefix, "norm2"), opt.groups_out > 0 ? opt.groups_out : opt.groups, co_, opt.eps,
               true, scale_shift_ ? PostActivation::None : PostActivation::SiLU),
        conv2_(params, join_name(prefix, "conv2"), co_, co_, 3, 1, 1),
        dropout_(join_name(prefix, "dropout"), opt.dropout, opt.dropout_streams),
        silu2_(join_name(prefix, "nonlinearity")),
        silu_t_(join_name(prefix, "nonlinearity")) {
    check(opt.output_scale_factor != 0.0, "output_scale_factor must not be 0");
    check(temb_ch_ >= 0, "temb_channels must be >= 0, got ", temb_ch_);
    if (temb_ch_ > 0) time_emb_proj_.emplace(params, join_name(prefix, "time_emb_proj"), temb_ch_, scale_shift_ ? 2 * co_ : co_);
    check(temb_ch_ > 0 || !scale_shift_, "time_embedding_norm scale_shift needs temb_channels > 0");
    if (opt.use_in_shortcut.value_or(ci_ != co_))
      conv_shortcut_.emplace(params, join_name(prefix, "conv_shortcut"), ci_, co_, 1, 1, 0, opt.conv_shortcut_bias);
    check(conv_shortcut_ || ci_ == co_, "in_channels (", ci_, ") != out_channels (", co_,
          ") needs the conv_shortcut");
  }

  // x: [N, Ci, H, W]; temb: [N, temb_channels] (empty view when temb_channels == 0,
  // or to skip the time embedding in default mode). -> [N, Co, H, W].
  // `out` (optional, inference only, that shape, not overlapping x): where to
  // write the result instead of the block's own buffer.
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, ConstTensorView<T, M> temb = {},
                                TensorView<T, M> out = {}) {
    check(x.rank() == 4 && x.dim(1) == ci_, "expected input [N, ", ci_, ", H, W], got ", x.shape().str());
    check(out.data() == nullptr || mode_ == Mode::Inference, "an output buffer is for inference only");
    const index_t N = x.dim(0);
    has_temb_ = temb.data() != nullptr;
    if (has_temb_) {
      check(time_emb_proj_.has_value(), "a time embedding was given but temb_channels is 0");
      check_shape("temb", temb.shape(), {N, temb_ch_});
    }
    check(has_temb_ || !scale_shift_, "scale_shift needs a time embedding");

    // In inference the intermediate results ping-pong through the shared
    // workspace (slots 0 and 1); in training the sub-layers keep the outputs
    // that backward reads (the inputs of norm and conv), and only the
    // convolution outputs that are consumed at once (by the time-embedding
    // add, the residual add) go to the workspace. norm1 and (default mode)
    // norm2 include the SiLU that follows them.
    const bool ws = mode_ == Mode::Inference;
    const Shape xs = x.shape(), hs{N, co_, x.dim(2), x.dim(3)};
    auto slot = [&](int i, const Shape& s) { return ws ? workspace<T, M>(i, s) : TensorView<T, M>{}; };
    const bool conv1_consumed = ws || (has_temb_ && !scale_shift_);
    // (One call per statement: a slot is asked for only after its last reader ran.)
    ConstTensorView<T, M> h = norm1_.forward(x, slot(0, xs));
    h = conv1_.forward(h, conv1_consumed ? workspace<T, M>(1, hs) : TensorView<T, M>{});
    ConstTensorView<T, M> e;
    if (has_temb_) e = time_emb_proj_->forward(silu_t_.forward(temb));
    if (has_temb_ && !scale_shift_) {
      // h + e[:, :, None, None]; in place on the workspace in inference.
      const TensorView<T, M> sum = ws ? workspace<T, M>(1, hs) : output_buffer(hsum_, hs, {});
      B::run(ops::add_channel_bias, h, e, sum);
      h = sum;
    }
    h = norm2_.forward(h, slot(0, hs));
    if (scale_shift_) {
      const TensorView<T, M> mod = ws ? workspace<T, M>(1, hs) : output_buffer(mod_, hs, {});
      B::run(ops::scale_shift_forward, h, e, mod);
      h = silu2_.forward(mod, slot(0, hs));
    }
    h = dropout_.forward(h);
    h = conv2_.forward(h, workspace<T, M>(1, hs));
    const ConstTensorView<T, M> sc = conv_shortcut_ ? conv_shortcut_->forward(x, workspace<T, M>(0, hs)) : x;
    x_shape_ = xs;
    const TensorView<T, M> y = output_buffer(y_, h.shape(), out);
    B::run(ops::add, sc, h, static_cast<T>(1.0 / osf_), y);
    have_forward_ = mode_ == Mode::Training;
    return y;
  }

  // Returns dx; the time embedding's gradient is temb_grad().
  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy) {
    check_backward(have_forward_);
    check_shape("output gradient", dy.shape(), y_.shape());
    const index_t N = y_.dim(0);
    // Intermediate gradients ping-pong through the shared workspace (slots 0
    // and 1); dy (scaled when output_scale_factor != 1) goes to both branches.
    const Shape hs = y_.shape(), xs = x_shape_;
    ConstTensorView<T, M> dh = dy;  // d(shortcut) = d(h) = dy / osf
    if (osf_ != 1.0) {
      ensure_shape(dh_, hs);
      B::run(ops::add, dy, {}, static_cast<T>(1.0 / osf_), dh_.view());
      dh = dh_.view();
    }
    // (One call per statement: a slot is asked for only after its last reader ran.)
    ConstTensorView<T, M> g = dropout_.backward(conv2_.backward(dh, workspace<T, M>(0, hs)));
    if (scale_shift_) {
      g = silu2_.backward(g, workspace<T, M>(1, hs));
      // g = d mod; d norm2-out = g * (1 + scale); d scale = sum g * n2; d shift = sum g.
      ensure_shape(de_, {N, 2 * co_});
      const TensorView<T, M> dmod = workspace<T, M>(0, hs);
      B::run(ops::scale_shift_backward, norm2_.output(), time_emb_proj_->output(), g, dmod, de_.view());
      g = norm2_.backward(dmod, workspace<T, M>(1, hs));
    } else {
      g = norm2_.backward(g, workspace<T, M>(1, hs));  // through SiLU and norm2
      if (has_temb_) {
        ensure_shape(de_, {N, co_});
        B::run(ops::channel_sum, g, de_.view());
      }
    }
    if (has_temb_) {
      const ConstTensorView<T, M> dt = silu_t_.backward(time_emb_proj_->backward(de_.view()));
      ensure_shape(dtemb_, dt.shape());
      B::run(ops::copy, dt, dtemb_.view());
    }
    // g is in slot 1; conv1's dx goes to slot 0, norm1's (through its SiLU) to
    // slot 2; the shortcut's dx reuses slot 1.
    ConstTensorView<T, M> dx_main = conv1_.backward(g, workspace<T, M>(0, xs));
    dx_main = norm1_.backward(dx_main, workspace<T, M>(2, xs));
    const ConstTensorView<T, M> dx_sc = conv_shortcut_ ? conv_shortcut_->backward(dh, workspace<T, M>(1, xs)) : dh;
    ensure_shape(dx_, xs);
    B::run(ops::add, dx_main, dx_sc, T{1}, dx_.view());
    return dx_.view();
  }

  // dL/dtemb of the last backward, [N, temb_channels] (empty without a time embedding).
  ConstTensorView<T, M> temb_grad() const { return has_temb_ ? ConstTensorView<T, M>(dtemb_.view()) : ConstTensorView<T, M>{}; }

  // The children (nn/composite.hpp), in init order.
  template <class F>
  void for_each_child(F&& f) {
    visit_children(f, norm1_, conv1_, time_emb_proj_, norm2_, conv2_, conv_shortcut_, silu2_, silu_t_, dropout_);
  }
  void init(Rng& rng) { init_children(*this, rng); }
  void set_mode(Mode m) { set_mode_recursive(*this, m); }

  index_t in_channels() const { return ci_; }
  index_t out_channels() const { return co_; }
  bool has_conv_shortcut() const { return conv_shortcut_.has_value(); }
  bool has_time_emb_proj() const { return time_emb_proj_.has_value(); }
  const Dropout<T, B>& dropout() const { return dropout_; }

 private:
  index_t ci_, co_, temb_ch_;
  bool scale_shift_;
  double osf_;
  GroupNorm<T, B> norm1_;
  Conv2d<T, B> conv1_;
  GroupNorm<T, B> norm2_;
  Conv2d<T, B> conv2_;
  Dropout<T, B> dropout_;
  std::optional<Linear<T, B>> time_emb_proj_;
  std::optional<Conv2d<T, B>> conv_shortcut_;
  SiLU<T, B> silu2_, silu_t_;  // silu2_: scale_shift mode only (else fused into norm2_)
  bool has_temb_ = false, have_forward_ = false;
  Shape x_shape_;
  Buffer hsum_, mod_, y_, dh_, de_, dtemb_, dx_;
};

}  // namespace ddpm::nn
