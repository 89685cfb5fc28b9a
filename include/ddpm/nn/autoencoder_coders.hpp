#pragma once
// diffusers' autoencoder Encoder and Decoder (models/autoencoders/vae.py),
// with the parameter names under "encoder." / "decoder.":
//
//   Encoder: conv_in 3x3 -> DownEncoderBlock2D per level -> mid block ->
//            conv_norm_out (GroupNorm eps 1e-6) -> SiLU -> conv_out 3x3 to
//            out_channels (2 x latent_channels for AutoencoderKL: double_z).
//   Decoder: conv_in 3x3 to block_out_channels[-1] -> mid block ->
//            UpDecoderBlock2D per level (reversed channels) -> conv_norm_out
//            -> SiLU -> conv_out 3x3.
// No skip connections. The norm and SiLU run fused (one GroupNorm pass).
//
// Stages (when `stages` is given to forward): "<prefix>.down_blocks.<i>",
// "<prefix>.mid_block", "<prefix>.up_blocks.<i>", "<prefix>.conv_out": views
// into the layers' buffers, valid until the next forward (diffusers'
// forward-hook names, as the golden data stores them).
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/autoencoder_blocks.hpp"
#include "ddpm/nn/autoencoder_config.hpp"
#include "ddpm/nn/composite.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "ddpm/nn/numerics.hpp"
#include "ddpm/nn/workspace.hpp"
#include "ddpm/core/parameters.hpp"

namespace ddpm::nn {

template <Scalar T>
using StageMap = std::map<std::string, ConstTensorView<T>>;

template <Scalar T, backend::Backend B>
class Encoder {
 public:
  // out_channels: 2 x latent_channels (AutoencoderKL) or latent_channels (VQModel).
  Encoder(Parameters<T>& p, const std::string& prefix, const AutoencoderLayout& c, index_t out_channels,
          Numerics numerics)
      : prefix_(prefix) {
    const auto& ch = c.block_out_channels;
    conv_in_ = std::make_unique<Conv2d<T, B>>(p, prefix + ".conv_in", c.in_channels, ch[0], 3, 1, 1);
    index_t out = ch[0];
    for (int i = 0; i < c.levels(); ++i) {
      const index_t in = out;
      out = ch[static_cast<std::size_t>(i)];
      down_.push_back(std::make_unique<DownEncoderBlock2D<T, B>>(p, prefix + ".down_blocks." + std::to_string(i), in,
                                                                 out, c.layers_per_block, c.norm_num_groups,
                                                                 i + 1 < c.levels()));
    }
    mid_ = std::make_unique<AutoencoderMidBlock<T, B>>(p, prefix + ".mid_block", ch.back(), c.norm_num_groups,
                                                       c.mid_block_add_attention, numerics);
    autoencoder_detail::check_groups(prefix + ".conv_norm_out", c.norm_num_groups, ch.back());
    norm_out_ = std::make_unique<GroupNorm<T, B>>(p, prefix + ".conv_norm_out", c.norm_num_groups, ch.back(),
                                                  kAutoencoderNormEps, true, PostActivation::SiLU);
    conv_out_ = std::make_unique<Conv2d<T, B>>(p, prefix + ".conv_out", ch.back(), out_channels, 3, 1, 1);
    in_channels_ = c.in_channels;
    factor_ = c.downsampling();
  }

  // x [N, in_channels, H, W] -> [N, out_channels, ceil(H / f), ceil(W / f)], f = 2^(levels - 1).
  ConstTensorView<T> forward(ConstTensorView<T> x, StageMap<T>* stages = nullptr) {
    require(x.rank() == 4 && x.dim(1) == in_channels_, prefix_, ": expected input [N, ", in_channels_,
            ", H, W], got ", x.shape().str());
    ConstTensorView<T> h = conv_in_->forward(x);
    for (std::size_t i = 0; i < down_.size(); ++i) {
      h = down_[i]->forward(h);
      if (stages) (*stages)[prefix_ + ".down_blocks." + std::to_string(i)] = h;
    }
    h = mid_->forward(h);
    if (stages) (*stages)[prefix_ + ".mid_block"] = h;
    h = conv_out_->forward(norm_out_->forward(h));
    if (stages) (*stages)[prefix_ + ".conv_out"] = h;
    return h;
  }

  ConstTensorView<T> backward(ConstTensorView<T> dy) {
    ConstTensorView<T> g = mid_->backward(norm_out_->backward(conv_out_->backward(dy)));
    for (std::size_t i = down_.size(); i-- > 0;) g = down_[i]->backward(g);
    return conv_in_->backward(g);
  }

  template <class F>
  void for_each_child(F&& f) {
    visit_children(f, conv_in_, down_, mid_, norm_out_, conv_out_);
  }
  void init(Rng& rng) { init_children(*this, rng); }
  void set_mode(Mode m) { set_mode_recursive(*this, m); }
  int downsampling() const { return factor_; }

 private:
  std::string prefix_;
  std::unique_ptr<Conv2d<T, B>> conv_in_;
  std::vector<std::unique_ptr<DownEncoderBlock2D<T, B>>> down_;
  std::unique_ptr<AutoencoderMidBlock<T, B>> mid_;
  std::unique_ptr<GroupNorm<T, B>> norm_out_;
  std::unique_ptr<Conv2d<T, B>> conv_out_;
  index_t in_channels_ = 0;
  int factor_ = 1;
};

template <Scalar T, backend::Backend B>
class Decoder {
 public:
  Decoder(Parameters<T>& p, const std::string& prefix, const AutoencoderLayout& c, Numerics numerics)
      : prefix_(prefix), in_channels_(c.latent_channels) {
    const auto& ch = c.block_out_channels;
    conv_in_ = std::make_unique<Conv2d<T, B>>(p, prefix + ".conv_in", c.latent_channels, ch.back(), 3, 1, 1);
    // diffusers registers up_blocks (an empty ModuleList) before mid_block.
    const std::vector<int> rev(ch.rbegin(), ch.rend());
    index_t out = rev[0];
    for (int i = 0; i < c.levels(); ++i) {
      const index_t prev = out;
      out = rev[static_cast<std::size_t>(i)];
      up_.push_back(std::make_unique<UpDecoderBlock2D<T, B>>(p, prefix + ".up_blocks." + std::to_string(i), prev, out,
                                                             c.layers_per_block + 1, c.norm_num_groups,
                                                             i + 1 < c.levels()));
    }
    mid_ = std::make_unique<AutoencoderMidBlock<T, B>>(p, prefix + ".mid_block", ch.back(), c.norm_num_groups,
                                                       c.mid_block_add_attention, numerics);
    autoencoder_detail::check_groups(prefix + ".conv_norm_out", c.norm_num_groups, ch[0]);
    norm_out_ = std::make_unique<GroupNorm<T, B>>(p, prefix + ".conv_norm_out", c.norm_num_groups, ch[0],
                                                  kAutoencoderNormEps, true, PostActivation::SiLU);
    conv_out_ = std::make_unique<Conv2d<T, B>>(p, prefix + ".conv_out", ch[0], c.out_channels, 3, 1, 1);
  }

  // z [N, latent_channels, h, w] -> [N, out_channels, h f, w f].
  ConstTensorView<T> forward(ConstTensorView<T> z, StageMap<T>* stages = nullptr) {
    require(z.rank() == 4 && z.dim(1) == in_channels_, prefix_, ": expected a latent [N, ", in_channels_,
            ", h, w], got ", z.shape().str());
    ConstTensorView<T> h = mid_->forward(conv_in_->forward(z));
    if (stages) (*stages)[prefix_ + ".mid_block"] = h;
    for (std::size_t i = 0; i < up_.size(); ++i) {
      h = up_[i]->forward(h);
      if (stages) (*stages)[prefix_ + ".up_blocks." + std::to_string(i)] = h;
    }
    // In inference conv_norm_out's result (read once, by conv_out) goes to workspace slot 0.
    return conv_out_->forward(
        norm_out_->forward(h, mode_ == Mode::Inference ? workspace<T>(0, h.shape()) : TensorView<T>{}));
  }

  ConstTensorView<T> backward(ConstTensorView<T> dy) {
    ConstTensorView<T> g = norm_out_->backward(conv_out_->backward(dy));
    for (std::size_t i = up_.size(); i-- > 0;) g = up_[i]->backward(g);
    return conv_in_->backward(mid_->backward(g));
  }

  template <class F>
  void for_each_child(F&& f) {
    visit_children(f, conv_in_, up_, mid_, norm_out_, conv_out_);
  }
  void init(Rng& rng) { init_children(*this, rng); }
  void set_mode(Mode m) {
    mode_ = m;
    set_mode_recursive(*this, m);
  }

 private:
  Mode mode_ = Mode::Training;
  std::string prefix_;
  index_t in_channels_;
  std::unique_ptr<Conv2d<T, B>> conv_in_;
  std::vector<std::unique_ptr<UpDecoderBlock2D<T, B>>> up_;
  std::unique_ptr<AutoencoderMidBlock<T, B>> mid_;
  std::unique_ptr<GroupNorm<T, B>> norm_out_;
  std::unique_ptr<Conv2d<T, B>> conv_out_;
};

}  // namespace ddpm::nn
