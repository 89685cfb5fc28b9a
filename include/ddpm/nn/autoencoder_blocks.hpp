#pragma once
// The blocks of diffusers' autoencoders (AutoencoderKL, VQModel), without
// time embedding (temb_channels 0) and with GroupNorm eps 1e-6 everywhere:
//
//   AutoencoderMidBlock   UNetMidBlock2D as Encoder/Decoder build it:
//                         resnet, attention (one head over all C channels,
//                         own GroupNorm, unless mid_block_add_attention is
//                         false), resnet.
//   DownEncoderBlock2D    layers_per_block resnets, then (unless last level)
//                         Downsample2D with padding 0: zero pad one row at the
//                         bottom and one column at the right, 3x3 stride 2.
//   UpDecoderBlock2D      layers_per_block + 1 resnets, then (unless last
//                         level) nearest x2 upsampling and a 3x3 conv.
//
// Parameter names are diffusers' (under the given prefix, e.g.
// "encoder.down_blocks.0"); the mid block registers its attention before its
// resnets, as diffusers declares them.
#include <memory>
#include <string>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/attention.hpp"
#include "ddpm/nn/composite.hpp"
#include "ddpm/nn/downsample.hpp"
#include "ddpm/nn/numerics.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/nn/resnet_block.hpp"
#include "ddpm/nn/upsample.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

// diffusers builds every autoencoder GroupNorm with eps 1e-6.
inline constexpr double kAutoencoderNormEps = 1e-6;

namespace autoencoder_detail {

inline ResnetBlock2DOptions resnet(index_t in, index_t out, int groups) {
  ResnetBlock2DOptions o;
  o.in_channels = in;
  o.out_channels = out;
  o.temb_channels = 0;
  o.groups = groups;
  o.eps = kAutoencoderNormEps;
  return o;
}

inline void check_groups(const std::string& layer, int groups, index_t channels) {
  require(groups > 0 && channels % groups == 0, layer, ": norm_num_groups = ", groups, " does not divide its ",
          channels, " channels");
}

template <Scalar T, backend::Backend B>
std::unique_ptr<ResnetBlock2D<T, B>> make_resnet(Parameters<T>& p, const std::string& name, index_t in, index_t out,
                                                 int groups) {
  check_groups(name + ".norm1", groups, in);
  check_groups(name + ".norm2", groups, out);
  return std::make_unique<ResnetBlock2D<T, B>>(p, name, resnet(in, out, groups));
}

// The resnets of a down / up block in order. In inference, each result that
// is consumed at once (by the next resnet, or by the block's resampler when
// `resampled`) ping-pongs through workspace slots 2 and 3 (the resnets use
// slots 0 and 1, the resamplers slot 0), so a block keeps one output, not
// one per resnet; in training every resnet keeps its own (backward reads it).
template <Scalar T, backend::Backend B>
ConstTensorView<T> run_resnets(std::vector<std::unique_ptr<ResnetBlock2D<T, B>>>& resnets, ConstTensorView<T> x,
                               Mode mode, bool resampled) {
  ConstTensorView<T> h = x;
  for (std::size_t j = 0; j < resnets.size(); ++j) {
    TensorView<T> out;
    if (mode == Mode::Inference && (resampled || j + 1 < resnets.size()))
      out = workspace<T>(2 + static_cast<int>(j % 2), {h.dim(0), resnets[j]->out_channels(), h.dim(2), h.dim(3)});
    h = resnets[j]->forward(h, {}, out);
  }
  return h;
}

}  // namespace autoencoder_detail

template <Scalar T, backend::Backend B>
class AutoencoderMidBlock {
 public:
  AutoencoderMidBlock(Parameters<T>& p, const std::string& prefix, index_t channels, int groups, bool add_attention,
                      Numerics numerics) {
    if (add_attention) {
      const std::string name = prefix + ".attentions.0";
      autoencoder_detail::check_groups(name + ".group_norm", groups, channels);
      AttentionOptions o;
      o.channels = channels;
      o.head_dim = std::nullopt;  // one head of size C: attention_head_dim = block_out_channels[-1]
      o.norm_groups = groups;
      o.eps = kAutoencoderNormEps;
      o.numerics = numerics;
      attention_ = std::make_unique<AttentionBlock<T, B>>(p, name, o);
    }
    for (int j = 0; j < 2; ++j)
      resnets_.push_back(autoencoder_detail::make_resnet<T, B>(p, prefix + ".resnets." + std::to_string(j), channels,
                                                               channels, groups));
  }

  ConstTensorView<T> forward(ConstTensorView<T> x) {
    ConstTensorView<T> h = resnets_[0]->forward(x);
    if (attention_) h = attention_->forward(h);
    return resnets_[1]->forward(h);
  }
  ConstTensorView<T> backward(ConstTensorView<T> dy) {
    ConstTensorView<T> g = resnets_[1]->backward(dy);
    if (attention_) g = attention_->backward(g);
    return resnets_[0]->backward(g);
  }

  // The children (nn/composite.hpp), in init order (diffusers' module order).
  template <class F>
  void for_each_child(F&& f) {
    visit_children(f, attention_, resnets_);
  }
  void init(Rng& rng) { init_children(*this, rng); }
  void set_mode(Mode m) { set_mode_recursive(*this, m); }
  bool has_attention() const { return attention_ != nullptr; }

 private:
  std::unique_ptr<AttentionBlock<T, B>> attention_;
  std::vector<std::unique_ptr<ResnetBlock2D<T, B>>> resnets_;
};

template <Scalar T, backend::Backend B>
class DownEncoderBlock2D {
 public:
  DownEncoderBlock2D(Parameters<T>& p, const std::string& prefix, index_t in, index_t out, int layers, int groups,
                     bool add_downsample) {
    for (int j = 0; j < layers; ++j)
      resnets_.push_back(autoencoder_detail::make_resnet<T, B>(p, prefix + ".resnets." + std::to_string(j),
                                                               j == 0 ? in : out, out, groups));
    if (add_downsample)
      down_ = std::make_unique<Downsample2D<T, B>>(p, prefix + ".downsamplers.0", out, out, /*padding=*/0);
  }

  ConstTensorView<T> forward(ConstTensorView<T> x) {
    const ConstTensorView<T> h = autoencoder_detail::run_resnets(resnets_, x, mode_, down_ != nullptr);
    return down_ ? down_->forward(h) : h;
  }
  ConstTensorView<T> backward(ConstTensorView<T> dy) {
    ConstTensorView<T> g = down_ ? down_->backward(dy) : dy;
    for (auto r = resnets_.rbegin(); r != resnets_.rend(); ++r) g = (*r)->backward(g);
    return g;
  }

  template <class F>
  void for_each_child(F&& f) {
    visit_children(f, resnets_, down_);
  }
  void init(Rng& rng) { init_children(*this, rng); }
  void set_mode(Mode m) {
    mode_ = m;
    set_mode_recursive(*this, m);
  }
  bool downsamples() const { return down_ != nullptr; }

 private:
  Mode mode_ = Mode::Training;
  std::vector<std::unique_ptr<ResnetBlock2D<T, B>>> resnets_;
  std::unique_ptr<Downsample2D<T, B>> down_;
};

template <Scalar T, backend::Backend B>
class UpDecoderBlock2D {
 public:
  UpDecoderBlock2D(Parameters<T>& p, const std::string& prefix, index_t in, index_t out, int layers, int groups,
                   bool add_upsample) {
    for (int j = 0; j < layers; ++j)
      resnets_.push_back(autoencoder_detail::make_resnet<T, B>(p, prefix + ".resnets." + std::to_string(j),
                                                               j == 0 ? in : out, out, groups));
    if (add_upsample) up_ = std::make_unique<Upsample2D<T, B>>(p, prefix + ".upsamplers.0", out, true, out);
  }

  ConstTensorView<T> forward(ConstTensorView<T> x) {
    const ConstTensorView<T> h = autoencoder_detail::run_resnets(resnets_, x, mode_, up_ != nullptr);
    return up_ ? up_->forward(h) : h;
  }
  ConstTensorView<T> backward(ConstTensorView<T> dy) {
    ConstTensorView<T> g = up_ ? up_->backward(dy) : dy;
    for (auto r = resnets_.rbegin(); r != resnets_.rend(); ++r) g = (*r)->backward(g);
    return g;
  }

  template <class F>
  void for_each_child(F&& f) {
    visit_children(f, resnets_, up_);
  }
  void init(Rng& rng) { init_children(*this, rng); }
  void set_mode(Mode m) {
    mode_ = m;
    set_mode_recursive(*this, m);
  }
  bool upsamples() const { return up_ != nullptr; }

 private:
  Mode mode_ = Mode::Training;
  std::vector<std::unique_ptr<ResnetBlock2D<T, B>>> resnets_;
  std::unique_ptr<Upsample2D<T, B>> up_;
};

}  // namespace ddpm::nn
