#pragma once
// The self-attention block of diffusers' UNet2DModel (Attention with
// residual_connection, _from_deprecated_attn_block): over the H*W tokens of
// an NCHW image,
//   h = GroupNorm(x) (optional), tokens [N, H*W, C]
//   q, k, v = to_q(h), to_k(h), to_v(h)          Linear C -> heads * head_dim, with bias
//   a = softmax(q k^T / sqrt(head_dim)) v         per head
//   y = (to_out.0(a) as NCHW + x) / rescale_output_factor
// heads = C / attention_head_dim, or one head of size C when attention_head_dim
// is null. Parameters: group_norm.{weight,bias}, to_q, to_k, to_v, to_out.0
// .{weight,bias} under the prefix.
//
// Numerics::Diffusers (default) computes the softmax in float32 for a float64
// layer, as diffusers does (upcast_softmax casts the scores to float32);
// Numerics::Exact keeps T. The backward pass is the same for both.
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <type_traits>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/composite.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "ddpm/nn/layer_base.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/numerics.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

struct AttentionOptions {
  index_t channels = 0;
  std::optional<index_t> head_dim = std::nullopt;  // diffusers' attention_head_dim; nullopt: one head of size `channels`
  int norm_groups = 32;               // 0: no GroupNorm (mid-block attention with scale_shift)
  double eps = 1e-5;                  // GroupNorm eps (UNet2DModel: norm_eps)
  double rescale_output_factor = 1.0;
  Numerics numerics = Numerics::Diffusers;
};

template <Scalar T, backend::Backend B>
class AttentionBlock : public LayerBase {
 public:
  using M = typename B::memory_space;
  using Buffer = Tensor<T, M>;

  AttentionBlock(Parameters<T, M>& params, const std::string& prefix, const AttentionOptions& opt)
      : LayerBase(prefix),
        opt_(checked(opt)),
        heads_(opt.head_dim ? static_cast<int>(opt.channels / *opt.head_dim) : 1),
        head_dim_(opt.head_dim ? *opt.head_dim : opt.channels),
        inner_(static_cast<index_t>(heads_) * head_dim_),
        scale_(static_cast<T>(1.0 / std::sqrt(static_cast<double>(head_dim_)))),
        to_q_(params, join_name(prefix, "to_q"), opt.channels, inner_),
        to_k_(params, join_name(prefix, "to_k"), opt.channels, inner_),
        to_v_(params, join_name(prefix, "to_v"), opt.channels, inner_),
        to_out_(params, join_name(prefix, "to_out.0"), inner_, opt.channels) {
    if (opt.norm_groups > 0)
      norm_.emplace(params, join_name(prefix, "group_norm"), opt.norm_groups, opt.channels, opt.eps, true);
  }

  // x: [N, C, H, W] -> same shape.
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x) {
    const index_t C = opt_.channels;
    check(x.rank() == 4 && x.dim(1) == C, "expected input [N, ", C, ", H, W], got ", x.shape().str());
    const index_t N = x.dim(0), L = x.dim(2) * x.dim(3);
    const ConstTensorView<T, M> h = norm_ ? norm_->forward(x) : x;
    ensure_shape(tokens_, {N, L, C});
    B::run(ops::transpose, h, N, C, L, tokens_.view());
    const ConstTensorView<T, M> q = to_q_.forward(tokens_.view());
    const ConstTensorView<T, M> k = to_k_.forward(tokens_.view());
    const ConstTensorView<T, M> v = to_v_.forward(tokens_.view());
    ensure_shape(attn_, {N, L, inner_});
    ensure_shape(probs_, {N, heads_, L, L});
    if (std::is_same_v<T, double> && opt_.numerics == Numerics::Diffusers)
      B::run(ops::attention_forward_float32_softmax, q, k, v, heads_, scale_, attn_.view(), probs_.view());
    else
      B::run(ops::attention_forward, q, k, v, heads_, scale_, attn_.view(), probs_.view());
    // to_out's result is consumed by the transpose below: workspace.
    const ConstTensorView<T, M> o = to_out_.forward(attn_.view(), workspace<T, M>(0, {N, L, C}));
    ensure_shape(y_, x.shape());
    B::run(ops::transpose, o, N, L, C, y_.view());  // [N, L, C] -> [N, C, L]
    B::run(ops::add, y_.cview(), x, static_cast<T>(1.0 / opt_.rescale_output_factor), y_.view());
    have_forward_ = mode_ == Mode::Training;
    return y_.view();
  }

  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy) {
    check_backward(have_forward_);
    check_shape("output gradient", dy.shape(), y_.shape());
    const index_t C = opt_.channels, N = y_.dim(0), L = y_.dim(2) * y_.dim(3);
    // d(to_out output), token-major, and the residual's share of dx.
    ensure_shape(dres_, y_.shape());
    B::run(ops::add, dy, {}, static_cast<T>(1.0 / opt_.rescale_output_factor), dres_.view());
    // The intermediate gradients live in the shared workspace (slots 0-5),
    // each slot taken again only after its last reader ran; dres_ (also the
    // residual's share of dx) is the layer's own.
    const Shape tok{N, L, C}, inner{N, L, inner_};
    const TensorView<T, M> dtok = workspace<T, M>(0, tok);
    B::run(ops::transpose, dres_.cview(), N, C, L, dtok);
    const ConstTensorView<T, M> dattn = to_out_.backward(dtok, workspace<T, M>(1, inner));
    const TensorView<T, M> dq = workspace<T, M>(2, inner), dk = workspace<T, M>(3, inner), dv = workspace<T, M>(4, inner);
    B::run(ops::attention_backward, ConstTensorView<T, M>(to_q_.output()), ConstTensorView<T, M>(to_k_.output()),
           ConstTensorView<T, M>(to_v_.output()), ConstTensorView<T, M>(probs_.view()), heads_, scale_, dattn, dq, dk, dv);
    // d tokens = sum of the three projections' input gradients.
    const ConstTensorView<T, M> a = to_q_.backward(dq, workspace<T, M>(0, tok));
    const ConstTensorView<T, M> b = to_k_.backward(dk, workspace<T, M>(1, tok));
    const ConstTensorView<T, M> c = to_v_.backward(dv, workspace<T, M>(5, tok));
    const TensorView<T, M> dsum = workspace<T, M>(2, tok);
    B::run(ops::add, a, b, T{1}, dsum);
    B::run(ops::add, ConstTensorView<T, M>(dsum), c, T{1}, dsum);
    const TensorView<T, M> dh = workspace<T, M>(3, y_.shape());
    B::run(ops::transpose, ConstTensorView<T, M>(dsum), N, L, C, dh);  // [N, L, C] -> [N, C, L]
    const ConstTensorView<T, M> dx_norm = norm_ ? norm_->backward(dh, workspace<T, M>(4, y_.shape())) : ConstTensorView<T, M>(dh);
    B::run(ops::add, dres_.cview(), dx_norm, T{1}, dres_.view());
    return dres_.view();
  }

  // The children (nn/composite.hpp), in init order.
  template <class F>
  void for_each_child(F&& f) {
    visit_children(f, norm_, to_q_, to_k_, to_v_, to_out_);
  }
  void init(Rng& rng) { init_children(*this, rng); }
  void set_mode(Mode m) { set_mode_recursive(*this, m); }

  int heads() const { return heads_; }
  index_t head_dim() const { return head_dim_; }
  T scale() const { return scale_; }
  const AttentionOptions& options() const { return opt_; }
  // The softmax rows of the last forward, [N, heads, L, L].
  ConstTensorView<T, M> probs() const { return probs_.view(); }

 private:
  static const AttentionOptions& checked(const AttentionOptions& opt) {
    require(opt.channels > 0, "AttentionBlock: channels must be > 0, got ", opt.channels);
    require(!opt.head_dim || (*opt.head_dim > 0 && *opt.head_dim <= opt.channels), "AttentionBlock: head_dim ",
            opt.head_dim.value_or(0), " must be in [1, channels = ", opt.channels, "]");
    require(opt.rescale_output_factor != 0.0, "AttentionBlock: rescale_output_factor must not be 0");
    return opt;
  }

  AttentionOptions opt_;
  int heads_;
  index_t head_dim_, inner_;
  T scale_;
  std::optional<GroupNorm<T, B>> norm_;
  Linear<T, B> to_q_, to_k_, to_v_, to_out_;
  bool have_forward_ = false;
  Buffer tokens_, attn_, probs_, y_, dres_;
};

}  // namespace ddpm::nn
