#pragma once
// AutoencoderKL<T, B>: diffusers' AutoencoderKL (the VAE of Stable Diffusion
// and the LDM kl-f* models), built at run time from an AutoencoderKLConfig,
// with diffusers' parameter names and state_dict order (encoder, decoder,
// quant_conv, post_quant_conv).
//
//   nn::AutoencoderKL<float, backend::Cpu> vae(config);   // or io::load_autoencoder_kl
//   auto& posterior = vae.encode(x);                        // x [N, C, H, W]
//   auto z = posterior.sample(rng);                         // or posterior.mode()
//   auto y = vae.decode(z);                                 // [N, C, H, W]
//
// encode: encoder (conv_out to 2 x latent_channels) -> quant_conv (1x1,
// unless use_quant_conv is false) -> the DiagonalGaussian posterior.
// decode: post_quant_conv (1x1, unless use_post_quant_conv is false) ->
// decoder. forward(x): decode(posterior.mode()), or decode(posterior.sample())
// with sample_posterior. scaling_factor / shift_factor are the caller's (the
// pipeline convention is decode(latents / scaling_factor + shift_factor)).
//
// Training: after forward(x) in training mode, backward(dy, dkl) takes
// dL/d(output) and dL/d(kl) per batch element (empty: none) and returns
// dL/dx, accumulating every parameter gradient. decode_backward(dy) and
// encode_backward(dmoments) run the halves separately.
//
// Large images: decode_tiled(z, TileOptions) and encode_tiled(x, TileOptions)
// run diffusers' tiled_decode / tiled_encode (nn/tiled.hpp: overlapping tiles,
// linear blends, working memory bounded by the tile size); inference only.
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/autoencoder_coders.hpp"
#include "ddpm/nn/autoencoder_config.hpp"
#include "ddpm/nn/composite.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/diagonal_gaussian.hpp"
#include "ddpm/nn/numerics.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/nn/tiled.hpp"

namespace ddpm::nn {

template <Scalar T, backend::Backend B>
class AutoencoderKL {
 public:
  using scalar_type = T;
  using backend_type = B;
  using config_type = AutoencoderKLConfig;

  // Validates the config and registers every parameter (zero; GroupNorm weights 1).
  explicit AutoencoderKL(AutoencoderKLConfig config, Numerics numerics = Numerics::Diffusers)
      : config_(std::move(config)), numerics_(numerics), params_(std::make_unique<Parameters<T>>()) {
    config_.validate();
    net_ = std::make_unique<Net>(*params_, config_, numerics_);
  }
  AutoencoderKL(AutoencoderKL&&) noexcept = default;
  AutoencoderKL& operator=(AutoencoderKL&&) noexcept = default;

  const AutoencoderKLConfig& config() const { return config_; }
  Numerics numerics() const { return numerics_; }
  Parameters<T>& parameters() { return *params_; }
  const Parameters<T>& parameters() const { return *params_; }
  index_t num_parameters() const { return params_->numel(); }
  Mode mode() const { return mode_; }
  void set_mode(Mode m) {
    mode_ = m;
    set_mode_recursive(*this, m);
  }
  // PyTorch's default initialisation, in for_each_child's order.
  void init(Rng& rng) { init_children(*this, rng); }

  template <class F>
  void for_each_child(F&& f) {
    Net& n = *net_;
    visit_children(f, n.encoder, n.decoder, n.quant_conv, n.post_quant_conv, n.posterior);
  }

  // x [N, in_channels, H, W] -> the posterior over the latent [N, L, H / f, W / f].
  DiagonalGaussian<T, B>& encode(ConstTensorView<T> x) {
    Net& n = *net_;
    if (n.recording) n.stages.clear();
    ConstTensorView<T> h = n.encoder->forward(x, n.recording ? &n.stages : nullptr);
    if (n.quant_conv) h = n.quant_conv->forward(h);
    n.posterior->forward(h);
    return *n.posterior;
  }
  DiagonalGaussian<T, B>& posterior() { return *net_->posterior; }

  // z [N, latent_channels, h, w] -> [N, out_channels, h f, w f].
  ConstTensorView<T> decode(ConstTensorView<T> z) {
    Net& n = *net_;
    require(z.rank() == 4 && z.dim(1) == config_.latent_channels, "AutoencoderKL: decode expects a latent [N, ",
            config_.latent_channels, ", h, w], got ", z.shape().str());
    ConstTensorView<T> h = z;
    if (n.post_quant_conv) {
      h = n.post_quant_conv->forward(h);
      if (n.recording) n.stages["post_quant_conv"] = h;
    }
    return n.decoder->forward(h, n.recording ? &n.stages : nullptr);
  }

  // diffusers' tiled_decode: z [N, latent_channels, h, w] -> [N, out_channels, h f, w f]
  // (f = 2^(levels - 1)) decoded tile by tile (nn/tiled.hpp). Unlike diffusers'
  // decode with use_tiling, this always tiles, even a latent no larger than one tile.
  // Returns a view of the model's tiled-result buffer, valid until the next tiled call.
  ConstTensorView<T> decode_tiled(ConstTensorView<T> z, const TileOptions& options = {}) {
    require(z.rank() == 4 && z.dim(1) == config_.latent_channels, "AutoencoderKL: decode_tiled expects a latent [N, ",
            config_.latent_channels, ", h, w], got ", z.shape().str());
    const auto g = detail::tile_geometry(true, options, config_.sample_size, factor(), "AutoencoderKL");
    tiled_map<T>(z, g, [&](ConstTensorView<T> tile) { return decode(tile); }, net_->tiled);
    return net_->tiled.cview();
  }
  // diffusers' tiled_encode: x [N, in_channels, H, W] (H, W multiples of f) ->
  // the posterior over moments blended tile by tile.
  DiagonalGaussian<T, B>& encode_tiled(ConstTensorView<T> x, const TileOptions& options = {}) {
    require(x.rank() == 4 && x.dim(1) == config_.in_channels && x.dim(2) % factor() == 0 && x.dim(3) % factor() == 0,
            "AutoencoderKL: encode_tiled expects images [N, ", config_.in_channels, ", H, W] with H and W multiples of ",
            factor(), ", got ", x.shape().str());
    const auto g = detail::tile_geometry(false, options, config_.sample_size, factor(), "AutoencoderKL");
    Net& n = *net_;
    tiled_map<T>(x, g, [&](ConstTensorView<T> tile) {
      ConstTensorView<T> h = n.encoder->forward(tile, nullptr);
      return n.quant_conv ? n.quant_conv->forward(h) : h;
    }, n.tiled);
    n.posterior->forward(n.tiled.cview());
    return *n.posterior;
  }
  // The spatial factor between image and latent, 2^(len(block_out_channels) - 1).
  index_t factor() const { return index_t{1} << (config_.levels() - 1); }

  // diffusers' forward: decode(posterior.mode()), or decode(posterior.sample())
  // with the noise drawn from rng when sample_posterior.
  ConstTensorView<T> forward(ConstTensorView<T> x, bool sample_posterior = false, Rng* rng = nullptr) {
    auto& post = encode(x);
    require(!sample_posterior || rng, "AutoencoderKL: sample_posterior needs a noise source (Rng)");
    return decode(sample_posterior ? post.sample(*rng) : post.mode());
  }

  // dL/d(decode output) -> dL/dz of the last decode.
  ConstTensorView<T> decode_backward(ConstTensorView<T> dy) {
    check_training();
    Net& n = *net_;
    ConstTensorView<T> g = n.decoder->backward(dy);
    return n.post_quant_conv ? n.post_quant_conv->backward(g) : g;
  }
  // dL/d(moments) -> dL/dx of the last encode.
  ConstTensorView<T> encode_backward(ConstTensorView<T> dmoments) {
    check_training();
    Net& n = *net_;
    ConstTensorView<T> g = n.quant_conv ? n.quant_conv->backward(dmoments) : dmoments;
    return n.encoder->backward(g);
  }
  // The whole forward: dL/d(output) and dL/d(kl) [N] (empty: no KL term) -> dL/dx.
  ConstTensorView<T> backward(ConstTensorView<T> dy, ConstTensorView<T> dkl = {}) {
    const ConstTensorView<T> dz = decode_backward(dy);
    return encode_backward(net_->posterior->backward(dz, dkl));
  }

  // Intermediates (diffusers' forward-hook names without ".out"): off by default.
  void record_intermediates(bool on) {
    net_->recording = on;
    net_->stages.clear();
  }
  const StageMap<T>& intermediates() const {
    require(net_->recording, "AutoencoderKL: intermediates() needs record_intermediates(true) before the forward");
    return net_->stages;
  }

 private:
  void check_training() const {
    require(mode_ == Mode::Training, "AutoencoderKL: backward needs a forward in training mode (set_mode(Mode::Training))");
  }

  struct Net {
    std::unique_ptr<Encoder<T, B>> encoder;
    std::unique_ptr<Decoder<T, B>> decoder;
    std::unique_ptr<Conv2d<T, B>> quant_conv, post_quant_conv;
    std::unique_ptr<DiagonalGaussian<T, B>> posterior;
    bool recording = false;
    StageMap<T> stages;
    Tensor<T> tiled;  // decode_tiled's result, encode_tiled's moments

    Net(Parameters<T>& p, const AutoencoderKLConfig& c, Numerics numerics) {
      const index_t L = c.latent_channels;
      encoder = std::make_unique<Encoder<T, B>>(p, "encoder", c, 2 * L, numerics);
      decoder = std::make_unique<Decoder<T, B>>(p, "decoder", c, numerics);
      if (c.use_quant_conv) quant_conv = std::make_unique<Conv2d<T, B>>(p, "quant_conv", 2 * L, 2 * L, 1, 1, 0);
      if (c.use_post_quant_conv)
        post_quant_conv = std::make_unique<Conv2d<T, B>>(p, "post_quant_conv", L, L, 1, 1, 0);
      posterior = std::make_unique<DiagonalGaussian<T, B>>("posterior");
    }
  };

  AutoencoderKLConfig config_;
  Numerics numerics_;
  Mode mode_ = Mode::Training;
  std::unique_ptr<Parameters<T>> params_;
  std::unique_ptr<Net> net_;
};

}  // namespace ddpm::nn
