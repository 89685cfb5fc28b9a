#pragma once
// The blocks of diffusers' UNet2DModel, built at run time from UNet2DConfig:
//
//   UNetDownBlock   DownBlock2D / AttnDownBlock2D: resnets (+ attentions),
//                   then a Downsample2D unless it is the last level. Every
//                   resnet(+attention) output and the downsampler output is
//                   pushed on the skip stack.
//   UNetMidBlock    UNetMidBlock2D: resnet, attention (unless add_attention is
//                   false), resnet, all with mid_block_scale_factor.
//   UNetUpBlock     UpBlock2D / AttnUpBlock2D: layers_per_block + 1 resnets,
//                   each on cat([hidden, skip]) with the skip popped from the
//                   stack (+ attentions), then an Upsample2D unless last.
//
// Parameters are registered in diffusers' state_dict order (attentions before
// resnets inside a block, as diffusers' modules are declared).
//
// Backward: each block's backward takes the gradient of its output and the
// skip stack's gradients (SkipGrads), adds the skip gradients where the block
// pushed a skip (down blocks) or records them where it popped one (up blocks),
// and accumulates every resnet's time-embedding gradient into `demb`.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/attention.hpp"
#include "ddpm/nn/composite.hpp"
#include "ddpm/nn/concat.hpp"
#include "ddpm/nn/downsample.hpp"
#include "ddpm/nn/layer_base.hpp"
#include "ddpm/nn/numerics.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/nn/resnet_block.hpp"
#include "ddpm/nn/unet2d_config.hpp"
#include "ddpm/nn/upsample.hpp"

namespace ddpm::nn {

namespace unet_detail {

// out = a + b (same shape), into a buffer owned by the caller.
template <class B, Scalar T, class M>
ConstTensorView<T, M> add(Tensor<T, M>& out, ConstTensorView<T, M> a, ConstTensorView<T, M> b) {
  require_same_shape(a.shape(), b.shape(), "U-Net skip gradient");
  ensure_shape(out, a.shape());
  B::run(ops::add, a, b, T{1}, out.view());
  return out.view();
}

// acc += x (acc is resized and zeroed by the caller).
template <class B, Scalar T, class M>
void accumulate(Tensor<T, M>& acc, ConstTensorView<T, M> x) {
  require_same_shape(acc.shape(), x.shape(), "U-Net time-embedding gradient");
  B::run(ops::add, acc.cview(), x, T{1}, acc.view());
}

inline void check_groups(const std::string& layer, int groups, index_t channels, const char* key) {
  require(groups > 0 && channels % groups == 0, "UNet2D: ", key, " = ", groups, " does not divide the ", channels,
          " channels of ", layer);
}

inline void check_heads(const std::string& layer, const UNet2DConfig& c, index_t channels) {
  const int hd = c.head_dim(static_cast<int>(channels));
  require(channels % hd == 0, "UNet2D: attention_head_dim = ", hd, " does not divide the ", channels,
          " channels of ", layer, " (diffusers would use ", channels / hd,
          " heads of that size and a narrower projection, which this library does not support)");
}

}  // namespace unet_detail

// The skip stack of one forward pass and its gradients (filled by the up
// blocks' backward, consumed by the down blocks' backward).
template <Scalar T, class M = Host>
struct SkipStack {
  std::vector<ConstTensorView<T, M>> values;  // pushed in order by conv_in and the down blocks
  std::vector<ConstTensorView<T, M>> grads;   // same indices; set by the up blocks' backward
};

// One ResNet block followed, optionally, by an attention block: the unit all
// three block types are made of.
template <Scalar T, backend::Backend B>
class ResnetAttention {
 public:
  using M = typename B::memory_space;
  ResnetAttention(std::unique_ptr<ResnetBlock2D<T, B>> resnet, std::unique_ptr<AttentionBlock<T, B>> attention)
      : resnet_(std::move(resnet)), attention_(std::move(attention)) {}

  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, ConstTensorView<T, M> emb) {
    const ConstTensorView<T, M> h = resnet_->forward(x, emb);
    return attention_ ? attention_->forward(h) : h;
  }
  // Returns dL/dx; adds dL/demb into demb.
  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy, Tensor<T, M>& demb) {
    const ConstTensorView<T, M> dh = attention_ ? attention_->backward(dy) : dy;
    const ConstTensorView<T, M> dx = resnet_->backward(dh);
    unet_detail::accumulate<B>(demb, resnet_->temb_grad());
    return dx;
  }
  // The children (nn/composite.hpp), in init order.
  template <class F>
  void for_each_child(F&& f) {
    visit_children(f, resnet_, attention_);
  }
  void init(Rng& rng) { init_children(*this, rng); }
  void set_mode(Mode m) { set_mode_recursive(*this, m); }

 private:
  std::unique_ptr<ResnetBlock2D<T, B>> resnet_;
  std::unique_ptr<AttentionBlock<T, B>> attention_;
};

// What every block needs from the config to build its layers.
struct UNetBlockContext {
  const UNet2DConfig& config;
  index_t temb_channels;
  Numerics numerics;
  DropoutStreams* dropout_streams = nullptr;  // the model's, shared by every ResNet block's dropout

  ResnetBlock2DOptions resnet(index_t in, index_t out, double output_scale = 1.0) const {
    ResnetBlock2DOptions o;
    o.in_channels = in;
    o.out_channels = out;
    o.temb_channels = temb_channels;
    o.groups = config.norm_num_groups;
    o.eps = config.norm_eps;
    o.time_embedding_norm = config.scale_shift() ? TimeEmbeddingNorm::ScaleShift : TimeEmbeddingNorm::Default;
    o.output_scale_factor = output_scale;
    o.dropout = config.dropout;
    o.dropout_streams = dropout_streams;
    return o;
  }
  AttentionOptions attention(index_t channels, int groups, double rescale = 1.0) const {
    AttentionOptions o;
    o.channels = channels;
    o.head_dim = config.head_dim(static_cast<int>(channels));
    o.norm_groups = groups;
    o.eps = config.norm_eps;
    o.rescale_output_factor = rescale;
    o.numerics = numerics;
    return o;
  }
};

// Builds the resnets and attentions of one block, attentions first (diffusers'
// state_dict order). in_of(j) gives resnet j's input channels.
template <Scalar T, backend::Backend B, class InChannels>
std::vector<ResnetAttention<T, B>> make_resnet_attentions(Parameters<T, typename B::memory_space>& params, const UNetBlockContext& ctx,
                                                          const std::string& prefix, int count, index_t out,
                                                          bool with_attention, InChannels in_of,
                                                          int attention_groups, double output_scale = 1.0) {
  std::vector<std::unique_ptr<AttentionBlock<T, B>>> attentions(static_cast<std::size_t>(count));
  if (with_attention) {
    for (int j = 0; j < count; ++j) {
      const std::string name = prefix + ".attentions." + std::to_string(j);
      unet_detail::check_heads(name, ctx.config, out);
      if (attention_groups > 0)
        unet_detail::check_groups(name + ".group_norm", attention_groups, out, "norm_num_groups");
      attentions[static_cast<std::size_t>(j)] = std::make_unique<AttentionBlock<T, B>>(
          params, name, ctx.attention(out, attention_groups, output_scale));
    }
  }
  std::vector<ResnetAttention<T, B>> units;
  for (int j = 0; j < count; ++j) {
    const std::string name = prefix + ".resnets." + std::to_string(j);
    const index_t in = in_of(j);
    unet_detail::check_groups(name + ".norm1", ctx.config.norm_num_groups, in, "norm_num_groups");
    unet_detail::check_groups(name + ".norm2", ctx.config.norm_num_groups, out, "norm_num_groups");
    units.emplace_back(std::make_unique<ResnetBlock2D<T, B>>(params, name, ctx.resnet(in, out, output_scale)),
                       std::move(attentions[static_cast<std::size_t>(j)]));
  }
  return units;
}

template <Scalar T, backend::Backend B>
class UNetDownBlock {
 public:
  using M = typename B::memory_space;
  using Buffer = Tensor<T, M>;

  UNetDownBlock(Parameters<T, M>& params, const UNetBlockContext& ctx, int index, index_t in, index_t out)
      : prefix_("down_blocks." + std::to_string(index)) {
    const auto& c = ctx.config;
    const bool attn = c.down_block_types.at(static_cast<std::size_t>(index)) == "AttnDownBlock2D";
    units_ = make_resnet_attentions<T, B>(
        params, ctx, prefix_, c.layers_per_block, out, attn, [&](int j) { return j == 0 ? in : out; },
        c.norm_num_groups);
    if (index + 1 < c.levels())
      down_ = std::make_unique<Downsample2D<T, B>>(params, prefix_ + ".downsamplers.0", out, out,
                                                   c.downsample_padding);
  }

  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, ConstTensorView<T, M> emb, SkipStack<T, M>& skips) {
    ConstTensorView<T, M> h = x;
    first_skip_ = skips.values.size();
    for (auto& u : units_) skips.values.push_back(h = u.forward(h, emb));
    if (down_) skips.values.push_back(h = down_->forward(h));
    return h;
  }

  // dy: gradient of the block's output from the layers after it.
  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy, const SkipStack<T, M>& skips, Tensor<T, M>& demb) {
    std::size_t s = first_skip_ + units_.size() + (down_ ? 1 : 0);
    ConstTensorView<T, M> g = dy;
    if (down_) g = down_->backward(unet_detail::add<B>(acc_, g, skips.grads.at(--s)));
    for (auto u = units_.rbegin(); u != units_.rend(); ++u)
      g = u->backward(unet_detail::add<B>(acc_, g, skips.grads.at(--s)), demb);
    return g;
  }

  // The children (nn/composite.hpp), in init order.
  template <class F>
  void for_each_child(F&& f) {
    visit_children(f, units_, down_);
  }
  void init(Rng& rng) { init_children(*this, rng); }
  void set_mode(Mode m) { set_mode_recursive(*this, m); }
  bool downsamples() const { return down_ != nullptr; }

 private:
  std::string prefix_;
  std::vector<ResnetAttention<T, B>> units_;
  std::unique_ptr<Downsample2D<T, B>> down_;
  std::size_t first_skip_ = 0;
  Buffer acc_;
};

template <Scalar T, backend::Backend B>
class UNetMidBlock {
 public:
  using M = typename B::memory_space;
  UNetMidBlock(Parameters<T, M>& params, const UNetBlockContext& ctx, index_t channels) {
    const auto& c = ctx.config;
    const double scale = c.mid_block_scale_factor;
    // diffusers: attentions (one, unless add_attention is false), then two resnets.
    std::unique_ptr<AttentionBlock<T, B>> attention;
    if (c.add_attention) {
      const std::string name = "mid_block.attentions.0";
      const int groups = c.mid_attention_groups();
      unet_detail::check_heads(name, c, channels);
      if (groups > 0)
        unet_detail::check_groups(name + ".group_norm", groups,
                                  channels, c.attn_norm_num_groups ? "attn_norm_num_groups" : "norm_num_groups");
      attention = std::make_unique<AttentionBlock<T, B>>(params, name, ctx.attention(channels, groups, scale));
    }
    for (int j = 0; j < 2; ++j) {
      const std::string name = "mid_block.resnets." + std::to_string(j);
      unet_detail::check_groups(name + ".norm1", c.norm_num_groups, channels, "norm_num_groups");
      units_.emplace_back(std::make_unique<ResnetBlock2D<T, B>>(params, name, ctx.resnet(channels, channels, scale)),
                          j == 0 ? std::move(attention) : nullptr);
    }
  }

  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, ConstTensorView<T, M> emb) {
    return units_[1].forward(units_[0].forward(x, emb), emb);
  }
  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy, Tensor<T, M>& demb) {
    return units_[0].backward(units_[1].backward(dy, demb), demb);
  }
  // The children (nn/composite.hpp), in init order.
  template <class F>
  void for_each_child(F&& f) {
    visit_children(f, units_);
  }
  void init(Rng& rng) { init_children(*this, rng); }
  void set_mode(Mode m) { set_mode_recursive(*this, m); }

 private:
  std::vector<ResnetAttention<T, B>> units_;
};

template <Scalar T, backend::Backend B>
class UNetUpBlock {
 public:
  using M = typename B::memory_space;
  UNetUpBlock(Parameters<T, M>& params, const UNetBlockContext& ctx, int index, index_t prev_out, index_t out,
              index_t skip_in)
      : prefix_("up_blocks." + std::to_string(index)) {
    const auto& c = ctx.config;
    const bool attn = c.up_block_types.at(static_cast<std::size_t>(index)) == "AttnUpBlock2D";
    const int n = c.layers_per_block + 1;
    // Resnet j sees [hidden, skip]: hidden has prev_out channels for j = 0, else
    // out; the skip has skip_in channels for the last resnet, else out.
    units_ = make_resnet_attentions<T, B>(
        params, ctx, prefix_, n, out, attn,
        [&](int j) { return (j == 0 ? prev_out : out) + (j == n - 1 ? skip_in : out); }, c.norm_num_groups);
    for (int j = 0; j < n; ++j) concats_.emplace_back(prefix_ + ".concat." + std::to_string(j));
    if (index + 1 < c.levels()) up_ = std::make_unique<Upsample2D<T, B>>(params, prefix_ + ".upsamplers.0", out);
    popped_.resize(static_cast<std::size_t>(n));
  }

  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, ConstTensorView<T, M> emb, SkipStack<T, M>& skips,
                             std::size_t& stack_top) {
    ConstTensorView<T, M> h = x;
    for (std::size_t j = 0; j < units_.size(); ++j) {
      require(stack_top > 0, prefix_, ": the skip stack is empty");
      popped_[j] = --stack_top;
      const ConstTensorView<T, M> skip = skips.values[popped_[j]];
      require(skip.rank() == 4 && h.rank() == 4 && skip.dim(2) == h.dim(2) && skip.dim(3) == h.dim(3), prefix_,
              ": the skip connection has shape ", skip.shape().str(), " but the hidden state has ", h.shape().str());
      h = units_[j].forward(concats_[j].forward(h, skip), emb);
    }
    return up_ ? up_->forward(h) : h;
  }

  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy, SkipStack<T, M>& skips, Tensor<T, M>& demb) {
    ConstTensorView<T, M> g = up_ ? up_->backward(dy) : dy;
    for (std::size_t j = units_.size(); j-- > 0;) {
      g = concats_[j].backward(units_[j].backward(g, demb));
      skips.grads.at(popped_[j]) = concats_[j].skip_grad();
    }
    return g;
  }

  // The children (nn/composite.hpp), in init order.
  template <class F>
  void for_each_child(F&& f) {
    visit_children(f, units_, concats_, up_);
  }
  void init(Rng& rng) { init_children(*this, rng); }
  void set_mode(Mode m) { set_mode_recursive(*this, m); }

 private:
  std::string prefix_;
  std::vector<ResnetAttention<T, B>> units_;
  std::vector<ChannelConcat<T, B>> concats_;
  std::unique_ptr<Upsample2D<T, B>> up_;
  std::vector<std::size_t> popped_;
};

}  // namespace ddpm::nn
