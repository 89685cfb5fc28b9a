#pragma once
// UNet2D<T, B>: diffusers' UNet2DModel, built at run time from a UNet2DConfig,
// with diffusers' parameter names, shapes and state_dict order.
//
//   nn::UNet2D<float, backend::Cpu> unet(config);       // zero weights
//   unet.init(rng);                                        // or io::load_unet2d_weights(unet, dir)
//   auto y = unet.forward(x, timesteps, class_labels);     // x [N, C, H, W]; y a view, valid until
//                                                          // the next forward
//   unet.parameters().zero_grad();
//   auto dx = unet.backward(dy);                           // grads accumulate in parameters().grads()
//
// forward follows UNet2DModel.forward (diffusers 0.40):
//   center_input_sample (x -> 2x - 1), sinusoidal time embedding of the
//   timesteps (one per batch element, or one for all; fractional allowed;
//   float32 as diffusers, or exact in T with Numerics::Exact), time MLP
//   (linear_1, SiLU, linear_2), + class embedding, conv_in, down blocks
//   pushing skips, mid block, up blocks popping skips and concatenating
//   [hidden, skip], conv_norm_out, SiLU, conv_out.
// Dropout (config.dropout > 0, in every ResNet block, nn/dropout.hpp) is
// applied by a training-mode forward that set_dropout_rngs armed with one
// random stream per batch element (the trainer does); any other forward runs
// as diffusers' eval mode, and backward refuses such a forward when
// dropout > 0, since its gradient would not be dropout's.
//
// Image conditioning (SR3 / LDM super-resolution): forward with a condition
// image runs the network on cat([x, image], dim=1); in_channels covers both
// (config.condition_channels says how many are the condition's). backward
// then returns dL/dx for the x channels only.
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/core/model.hpp"
#include "ddpm/nn/composite.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/dropout.hpp"
#include "ddpm/nn/embedding.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/numerics.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/nn/timestep_embedding.hpp"
#include "ddpm/nn/unet2d_config.hpp"
#include "ddpm/nn/unet_blocks.hpp"

namespace ddpm::nn {

template <Scalar T, backend::Backend B>
class UNet2D {
 public:
  using scalar_type = T;
  using backend_type = B;
  using M = typename B::memory_space;
  using memory_space = M;
  using Buffer = Tensor<T, M>;

  // Validates the config and registers every parameter (zero-initialised;
  // GroupNorm weights 1). Numerics::Diffusers computes the timestep embedding
  // and the attention softmax in float32 as diffusers does even for double;
  // Numerics::Exact computes them in T.
  explicit UNet2D(UNet2DConfig config, Numerics numerics = Numerics::Diffusers)
      : config_(std::move(config)), numerics_(numerics), params_(std::make_unique<Parameters<T, M>>()) {
    config_.validate();
    net_ = std::make_unique<Net>(*params_, config_, numerics_);
  }

  UNet2D(UNet2D&&) noexcept = default;
  UNet2D& operator=(UNet2D&&) noexcept = default;

  const UNet2DConfig& config() const { return config_; }
  Numerics numerics() const { return numerics_; }
  Parameters<T, M>& parameters() { return *params_; }
  const Parameters<T, M>& parameters() const { return *params_; }
  index_t num_parameters() const { return params_->numel(); }
  Mode mode() const { return mode_; }

  void set_mode(Mode m) {
    mode_ = m;
    set_mode_recursive(*this, m);
  }

  // PyTorch's default initialisation of every layer (as UNet2DModel(**config)),
  // drawn in for_each_child's order.
  void init(Rng& rng) { init_children(*this, rng); }

  // The top-level layers (nn/composite.hpp): conv_in, time_proj,
  // time_embedding.{linear_1, act, linear_2}, class_embedding (when present),
  // down_blocks, up_blocks, mid_block (when present), conv_norm_out, conv_act,
  // conv_out. The order is init's: it fixes a seed's weights.
  template <class F>
  void for_each_child(F&& f) {
    Net& n = *net_;
    visit_children(f, n.conv_in, n.time_proj, n.linear_1, n.time_act, n.linear_2, n.class_embedding, n.down, n.up,
                   n.mid, n.norm_out, n.act_out, n.conv_out);
  }

  // x [N, in_channels, H, W] (H, W divisible by 2^(levels - 1)); timesteps:
  // N values, or one for the whole batch; class_labels: N labels in
  // [0, num_class_embeds) when the config has a class embedding, else empty.
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, std::span<const double> timesteps,
                             std::span<const std::int64_t> class_labels = {}) {
    require(config_.condition_channels == 0 || x.rank() != 4 || x.dim(1) != config_.noise_channels(),
            "UNet2D: x_t ", x.shape().str(), " without its condition image: this model takes a condition of ",
            config_.condition_channels, " channels (Conditioning::image), concatenated to x_t's ",
            config_.noise_channels(), " channels");
    conditioned_ = false;
    return run_forward(x, timesteps, class_labels);
  }
  // With a condition image [N, C_cond, H, W] (x's N, H, W): the network sees
  // cat([x, image], dim=1), which must have in_channels channels (and C_cond
  // = config.condition_channels when that is set).
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, std::span<const double> timesteps,
                             std::span<const std::int64_t> class_labels, ConstTensorView<T, M> image) {
    if (image.data() == nullptr) return forward(x, timesteps, class_labels);
    check_condition(x, image);
    Shape s = x.shape();
    s[1] = config_.in_channels;
    ensure_shape(x_cond_, s);
    B::run(ops::concat_channels, x, image, x_cond_.view());
    const ConstTensorView<T, M> y = run_forward(x_cond_.cview(), timesteps, class_labels);
    conditioned_ = true;
    x_channels_ = x.dim(1);
    return y;
  }
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, double timestep, std::span<const std::int64_t> class_labels = {}) {
    return forward(x, std::span<const double>(&timestep, 1), class_labels);
  }
  // The Denoiser interface (core/model.hpp): timesteps in T.
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, std::span<const T> timesteps, const Conditioning<T, M>& cond) {
    require(cond.vector.data() == nullptr,
            "UNet2D: a conditioning vector was given, but UNet2DModel takes class labels and a condition image only");
    if constexpr (std::is_same_v<T, double>) {
      return forward(x, timesteps, cond.class_labels, cond.image);
    } else {
      t_double_.assign(timesteps.begin(), timesteps.end());
      return forward(x, std::span<const double>(t_double_), cond.class_labels, cond.image);
    }
  }

  // Arms dropout for the next forward (StochasticDenoiser, core/model.hpp):
  // one stream per batch element, from which every ResNet block's dropout
  // draws that element's mask in forward order (nn/dropout.hpp). Without
  // dropout (config.dropout == 0) or in inference mode the streams are unused.
  void set_dropout_rngs(std::span<const Rng> per_sample) { net_->dropout_streams.arm(per_sample); }

  // dL/doutput for the last forward -> dL/dx. ACCUMULATES the parameter
  // gradients into parameters().grads() (zero them first with zero_grad()).
  ConstTensorView<T, M> backward(ConstTensorView<T, M> dout) {
    require(mode_ == Mode::Training, "UNet2D: backward needs a forward in training mode (set_mode(Mode::Training))");
    require(config_.dropout == 0.0 || dropout_applied_, "UNet2D: dropout = ", config_.dropout,
            ": the last forward applied no dropout mask (call set_dropout_rngs before a training forward; the",
            " trainer does)");
    const ConstTensorView<T, M> g = net_->backward(dout, config_);
    if (!conditioned_) return g;
    // dL/dx is the x channels of dL/d cat([x, image]); the condition's gradient is dropped.
    Shape sx = g.shape(), sc = g.shape();
    sx[1] = x_channels_;
    sc[1] = g.dim(1) - x_channels_;
    ensure_shape(dx_, sx);
    ensure_shape(dcond_, sc);
    B::run(ops::split_channels, g, dx_.view(), dcond_.view());
    return dx_.cview();
  }

  // Intermediates: the outputs of the named stages of a forward (as
  // diffusers' forward hooks name them: t_emb, time_embedding_out, class_emb,
  // conv_in_out, down_blocks.<i>.out, mid_block.out, up_blocks.<i>.out,
  // conv_norm_out.out). Off by default (forward then does no bookkeeping for
  // them); record_intermediates(true) makes every later forward record them.
  void record_intermediates(bool on) {
    net_->recording = on;
    net_->stages.clear();
  }
  bool records_intermediates() const { return net_->recording; }
  // The intermediates of the last forward: views into the layers' buffers,
  // valid until the next forward. Needs record_intermediates(true) first.
  const std::map<std::string, ConstTensorView<T, M>>& intermediates() const {
    require(net_->recording, "UNet2D: intermediates() needs record_intermediates(true) before the forward");
    return net_->stages;
  }

 private:
  // Every layer, in diffusers' module (and state_dict) order. Held by pointer
  // so that the model can move while the layers keep views of each other's
  // buffers and a pointer to the parameters.
  struct Net {
    std::unique_ptr<Conv2d<T, B>> conv_in;
    std::unique_ptr<SinusoidalTimestepEmbedding<T, B>> time_proj;
    std::unique_ptr<Linear<T, B>> linear_1, linear_2;
    SiLU<T, B> time_act{"time_embedding.act"};
    std::unique_ptr<Embedding<T, B>> class_embedding;
    std::vector<std::unique_ptr<UNetDownBlock<T, B>>> down;
    std::vector<std::unique_ptr<UNetUpBlock<T, B>>> up;
    std::unique_ptr<UNetMidBlock<T, B>> mid;
    std::unique_ptr<GroupNorm<T, B>> norm_out;
    SiLU<T, B> act_out{"conv_act"};
    std::unique_ptr<Conv2d<T, B>> conv_out;

    DropoutStreams dropout_streams;  // shared by every ResNet block's dropout
    SkipStack<T, M> skips;
    Buffer centered, emb_sum, demb, dconv_in, dx;
    std::vector<double> t_batch;
    ConstTensorView<T, M> emb_in;  // the embedding the blocks saw (time + class)
    bool recording = false;     // record the intermediates in `stages`
    std::map<std::string, ConstTensorView<T, M>> stages;
    bool centered_input = false;

    Net(Parameters<T, M>& p, const UNet2DConfig& c, Numerics numerics) {
      const auto& ch = c.block_out_channels;
      const index_t c0 = ch[0], temb = c.time_embed_dim();
      const UNetBlockContext ctx{c, temb, numerics, &dropout_streams};
      conv_in = std::make_unique<Conv2d<T, B>>(p, "conv_in", c.in_channels, c0, 3, 1, 1);
      TimestepEmbeddingOptions te;
      te.dim = c0;
      te.flip_sin_to_cos = c.flip_sin_to_cos;
      te.freq_shift = c.freq_shift;
      te.numerics = numerics;
      time_proj = std::make_unique<SinusoidalTimestepEmbedding<T, B>>(te, "time_proj");
      linear_1 = std::make_unique<Linear<T, B>>(p, "time_embedding.linear_1", c0, temb);
      linear_2 = std::make_unique<Linear<T, B>>(p, "time_embedding.linear_2", temb, temb);
      if (c.num_class_embeds)
        class_embedding = std::make_unique<Embedding<T, B>>(p, "class_embedding", *c.num_class_embeds, temb);
      index_t out = c0;
      for (int i = 0; i < c.levels(); ++i) {
        const index_t in = out;
        out = ch[static_cast<std::size_t>(i)];
        down.push_back(std::make_unique<UNetDownBlock<T, B>>(p, ctx, i, in, out));
      }
      // diffusers registers up_blocks before mid_block (mid_block is assigned later).
      const std::vector<int> rev(ch.rbegin(), ch.rend());
      out = rev[0];
      for (int i = 0; i < c.levels(); ++i) {
        const index_t prev = out;
        out = rev[static_cast<std::size_t>(i)];
        const index_t skip_in = rev[static_cast<std::size_t>(std::min(i + 1, c.levels() - 1))];
        up.push_back(std::make_unique<UNetUpBlock<T, B>>(p, ctx, i, prev, out, skip_in));
      }
      if (c.has_mid_block()) mid = std::make_unique<UNetMidBlock<T, B>>(p, ctx, ch.back());
      unet_detail::check_groups("conv_norm_out", c.norm_num_groups, c0, "norm_num_groups");
      norm_out = std::make_unique<GroupNorm<T, B>>(p, "conv_norm_out", c.norm_num_groups, c0, c.norm_eps);
      conv_out = std::make_unique<Conv2d<T, B>>(p, "conv_out", c0, c.out_channels, 3, 1, 1);
    }

    ConstTensorView<T, M> forward(ConstTensorView<T, M> x, std::span<const double> t, std::span<const std::int64_t> labels,
                               const UNet2DConfig& c) {
      require(x.rank() == 4 && x.dim(1) == c.in_channels, "UNet2D: expected x [N, ", c.in_channels,
              ", H, W], got ", x.shape().str());
      const index_t N = x.dim(0), f = index_t{1} << (c.levels() - 1);
      require(x.dim(2) % f == 0 && x.dim(3) % f == 0, "UNet2D: height and width (", x.dim(2), " x ", x.dim(3),
              ") must be divisible by ", f, " (2^(levels - 1)) for the skip connections to line up");
      require(t.size() == static_cast<std::size_t>(N) || t.size() == 1, "UNet2D: ", t.size(),
              " timesteps for a batch of ", N, " (give one per batch element, or one for all)");
      t_batch.assign(static_cast<std::size_t>(N), t.empty() ? 0.0 : t[0]);
      if (t.size() == static_cast<std::size_t>(N)) std::copy(t.begin(), t.end(), t_batch.begin());
      if (recording) stages.clear();

      // 1. input and embeddings
      ConstTensorView<T, M> xin = x;
      centered_input = c.center_input_sample;
      if (centered_input) {
        ensure_shape(centered, x.shape());
        B::run(ops::affine, x, T{2}, T{-1}, centered.view());  // 2x - 1
        xin = centered.view();
      }
      const ConstTensorView<T, M> t_emb = time_proj->forward(std::span<const double>(t_batch));
      if (recording) stages["t_emb"] = t_emb;
      ConstTensorView<T, M> emb = linear_2->forward(time_act.forward(linear_1->forward(t_emb)));
      if (recording) stages["time_embedding_out"] = emb;
      if (class_embedding) {
        require(labels.size() == static_cast<std::size_t>(N), "UNet2D: this model has a class embedding (",
                "num_class_embeds = ", *c.num_class_embeds, ") and needs ", N, " class labels, got ", labels.size());
        const ConstTensorView<T, M> ce = class_embedding->forward(labels);
        if (recording) stages["class_emb"] = ce;
        emb = unet_detail::add<B>(emb_sum, emb, ce);
      } else {
        require(labels.empty(), "UNet2D: class labels were given but the model has no class embedding ",
                "(num_class_embeds is null)");
      }
      emb_in = emb;

      // 2. conv_in, 3. down
      ConstTensorView<T, M> h = conv_in->forward(xin);
      if (recording) stages["conv_in_out"] = h;
      skips.values.assign(1, h);
      for (std::size_t i = 0; i < down.size(); ++i) {
        h = down[i]->forward(h, emb, skips);
        if (recording) stages["down_blocks." + std::to_string(i) + ".out"] = h;
      }
      // 4. mid
      if (mid) {
        h = mid->forward(h, emb);
        if (recording) stages["mid_block.out"] = h;
      }
      // 5. up
      std::size_t top = skips.values.size();
      for (std::size_t i = 0; i < up.size(); ++i) {
        h = up[i]->forward(h, emb, skips, top);
        if (recording) stages["up_blocks." + std::to_string(i) + ".out"] = h;
      }
      require(top == 0, "UNet2D: ", top, " skip connections left unused");
      // 6. output
      h = norm_out->forward(h);
      if (recording) stages["conv_norm_out.out"] = h;
      return conv_out->forward(act_out.forward(h));
    }

    ConstTensorView<T, M> backward(ConstTensorView<T, M> dout, const UNet2DConfig&) {
      ConstTensorView<T, M> g = norm_out->backward(act_out.backward(conv_out->backward(dout)));
      ensure_shape(demb, emb_in.shape());
      B::run(ops::fill, T{0}, demb.view());
      skips.grads.assign(skips.values.size(), ConstTensorView<T, M>{});
      for (std::size_t i = up.size(); i-- > 0;) g = up[i]->backward(g, skips, demb);
      if (mid) g = mid->backward(g, demb);
      for (std::size_t i = down.size(); i-- > 0;) g = down[i]->backward(g, skips, demb);
      g = conv_in->backward(unet_detail::add<B>(dconv_in, g, skips.grads.at(0)));
      // Embeddings: the class table and the time MLP (the timesteps take no gradient).
      if (class_embedding) class_embedding->backward(demb.view());
      linear_1->backward(time_act.backward(linear_2->backward(demb.view())));
      if (!centered_input) return g;
      ensure_shape(dx, g.shape());
      B::run(ops::add, g, {}, T{2}, dx.view());  // d(2x - 1) = 2 dx
      return dx.view();
    }
  };

  ConstTensorView<T, M> run_forward(ConstTensorView<T, M> x, std::span<const double> timesteps,
                                    std::span<const std::int64_t> class_labels) {
    DropoutStreams& streams = net_->dropout_streams;
    dropout_applied_ = config_.dropout > 0 && mode_ == Mode::Training && streams.armed;
    struct Disarm {  // the streams serve one forward, even one that throws
      DropoutStreams& s;
      ~Disarm() { s.disarm(); }
    } disarm{streams};
    return net_->forward(x, timesteps, class_labels, config_);
  }

  // One line naming both shapes when the condition image does not fit x.
  void check_condition(ConstTensorView<T, M> x, ConstTensorView<T, M> image) const {
    const int cc = config_.condition_channels;
    const bool fits = x.rank() == 4 && image.rank() == 4 && image.dim(0) == x.dim(0) && image.dim(2) == x.dim(2) &&
                      image.dim(3) == x.dim(3) && x.dim(1) + image.dim(1) == config_.in_channels &&
                      (cc == 0 || image.dim(1) == cc);
    require(fits, "UNet2D: condition image ", image.shape().str(), " does not fit x_t ", x.shape().str(),
            ": expected [N, C_cond, H, W] with x_t's N, H, W and x_t channels + C_cond = in_channels = ",
            config_.in_channels, " (out_channels = ", config_.out_channels, ", condition_channels = ", cc, ")");
  }

  UNet2DConfig config_;
  Numerics numerics_;
  Mode mode_ = Mode::Training;
  bool dropout_applied_ = false, conditioned_ = false;
  index_t x_channels_ = 0;
  Buffer x_cond_, dx_, dcond_;
  std::unique_ptr<Parameters<T, M>> params_;
  std::unique_ptr<Net> net_;
  std::vector<double> t_double_;
};

}  // namespace ddpm::nn
