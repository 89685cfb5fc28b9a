#pragma once
// VQModel<T, B>: diffusers' VQModel (the VQ-VAE of the LDM vq-f* models),
// built at run time from a VQModelConfig, with diffusers' parameter names and
// state_dict order (encoder, quant_conv, quantize, post_quant_conv, decoder).
//
//   nn::VQModel<float, backend::Cpu> vq(config);    // or io::load_vq_model
//   auto z = vq.encode(x);                            // latents, NOT quantized (diffusers' encode)
//   auto y = vq.decode(z);                            // quantizes first (force_not_quantize: skips it)
//   vq.quantizer().indices(); vq.quantizer().commit_loss();
//
// encode: encoder (conv_out to latent_channels) -> quant_conv (1x1 to vq_embed_dim).
// decode: VectorQuantizer (unless force_not_quantize) -> post_quant_conv (1x1
// back to latent_channels) -> decoder. forward(x) = decode(encode(x)).
// decode_indices(indices) decodes codebook indices (get_codebook_entry).
// decode_tiled / encode_tiled: tiled as AutoencoderKL's (nn/tiled.hpp); the
// quantizer works per position, so decode_tiled quantizes the whole latent
// first and tiles post_quant_conv + decoder. Inference only.
//
// Training: after forward(x) in training mode, backward(dy, dcommit) takes
// dL/d(output) and dL/d(commit_loss) and returns dL/dx (straight-through
// quantizer, nn/vector_quantizer.hpp), accumulating every parameter gradient.
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/autoencoder_coders.hpp"
#include "ddpm/nn/autoencoder_config.hpp"
#include "ddpm/nn/composite.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/numerics.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/nn/tiled.hpp"
#include "ddpm/nn/vector_quantizer.hpp"

namespace ddpm::nn {

template <Scalar T, backend::Backend B>
class VQModel {
 public:
  using scalar_type = T;
  using backend_type = B;
  using config_type = VQModelConfig;

  explicit VQModel(VQModelConfig config, Numerics numerics = Numerics::Diffusers)
      : config_(std::move(config)), numerics_(numerics), params_(std::make_unique<Parameters<T>>()) {
    config_.validate();
    net_ = std::make_unique<Net>(*params_, config_, numerics_);
  }
  VQModel(VQModel&&) noexcept = default;
  VQModel& operator=(VQModel&&) noexcept = default;

  const VQModelConfig& config() const { return config_; }
  Numerics numerics() const { return numerics_; }
  Parameters<T>& parameters() { return *params_; }
  const Parameters<T>& parameters() const { return *params_; }
  index_t num_parameters() const { return params_->numel(); }
  Mode mode() const { return mode_; }
  void set_mode(Mode m) {
    mode_ = m;
    set_mode_recursive(*this, m);
  }
  void init(Rng& rng) { init_children(*this, rng); }

  template <class F>
  void for_each_child(F&& f) {
    Net& n = *net_;
    visit_children(f, n.encoder, n.quant_conv, n.quantize, n.post_quant_conv, n.decoder);
  }

  VectorQuantizer<T, B>& quantizer() { return *net_->quantize; }

  // x [N, in_channels, H, W] -> latents [N, vq_embed_dim, H / f, W / f] (before quantization).
  ConstTensorView<T> encode(ConstTensorView<T> x) {
    Net& n = *net_;
    if (n.recording) n.stages.clear();
    return n.quant_conv->forward(n.encoder->forward(x, n.recording ? &n.stages : nullptr));
  }

  // z [N, vq_embed_dim, h, w] -> [N, out_channels, h f, w f].
  ConstTensorView<T> decode(ConstTensorView<T> z, bool force_not_quantize = false) {
    Net& n = *net_;
    require(z.rank() == 4 && z.dim(1) == config_.embed_dim(), "VQModel: decode expects latents [N, ",
            config_.embed_dim(), ", h, w], got ", z.shape().str());
    n.quantized = !force_not_quantize;
    const ConstTensorView<T> q = force_not_quantize ? z : n.quantize->forward(z);
    return decode_quantized(q);
  }

  // decode, tile by tile (nn/tiled.hpp). Returns a view of the model's
  // tiled-result buffer, valid until the next tiled call.
  ConstTensorView<T> decode_tiled(ConstTensorView<T> z, const TileOptions& options = {},
                                  bool force_not_quantize = false) {
    Net& n = *net_;
    require(z.rank() == 4 && z.dim(1) == config_.embed_dim(), "VQModel: decode_tiled expects latents [N, ",
            config_.embed_dim(), ", h, w], got ", z.shape().str());
    const auto g = detail::tile_geometry(true, options, config_.sample_size, factor(), "VQModel");
    n.quantized = false;
    const ConstTensorView<T> q = force_not_quantize ? z : n.quantize->forward(z);
    tiled_map<T>(q, g, [&](ConstTensorView<T> tile) { return n.decoder->forward(n.post_quant_conv->forward(tile), nullptr); },
                 n.tiled);
    return n.tiled.cview();
  }
  // encode, tile by tile: x [N, in_channels, H, W] (H, W multiples of f) -> latents.
  ConstTensorView<T> encode_tiled(ConstTensorView<T> x, const TileOptions& options = {}) {
    require(x.rank() == 4 && x.dim(1) == config_.in_channels && x.dim(2) % factor() == 0 && x.dim(3) % factor() == 0,
            "VQModel: encode_tiled expects images [N, ", config_.in_channels, ", H, W] with H and W multiples of ",
            factor(), ", got ", x.shape().str());
    const auto g = detail::tile_geometry(false, options, config_.sample_size, factor(), "VQModel");
    Net& n = *net_;
    tiled_map<T>(x, g, [&](ConstTensorView<T> tile) { return n.quant_conv->forward(n.encoder->forward(tile, nullptr)); },
                 n.tiled);
    return n.tiled.cview();
  }
  index_t factor() const { return index_t{1} << (config_.levels() - 1); }

  // Decodes codebook indices [N, h, w] (n-major): E[indices] -> post_quant_conv -> decoder.
  ConstTensorView<T> decode_indices(std::span<const std::int64_t> indices, index_t N, index_t h, index_t w) {
    net_->quantized = false;
    return decode_quantized(net_->quantize->lookup(indices, N, h, w));
  }

  ConstTensorView<T> forward(ConstTensorView<T> x) { return decode(encode(x)); }

  // dL/d(decode output), dL/d(commit_loss) -> dL/dz of the last decode.
  ConstTensorView<T> decode_backward(ConstTensorView<T> dy, T dcommit = T{0}) {
    check_training();
    Net& n = *net_;
    const ConstTensorView<T> g = n.post_quant_conv->backward(n.decoder->backward(dy));
    return n.quantized ? n.quantize->backward(g, dcommit) : g;
  }
  ConstTensorView<T> encode_backward(ConstTensorView<T> dlatents) {
    check_training();
    Net& n = *net_;
    return n.encoder->backward(n.quant_conv->backward(dlatents));
  }
  // The whole forward: dL/d(output), dL/d(commit_loss) -> dL/dx.
  ConstTensorView<T> backward(ConstTensorView<T> dy, T dcommit = T{1}) {
    return encode_backward(decode_backward(dy, dcommit));
  }

  void record_intermediates(bool on) {
    net_->recording = on;
    net_->stages.clear();
  }
  const StageMap<T>& intermediates() const {
    require(net_->recording, "VQModel: intermediates() needs record_intermediates(true) before the forward");
    return net_->stages;
  }

 private:
  ConstTensorView<T> decode_quantized(ConstTensorView<T> q) {
    Net& n = *net_;
    const ConstTensorView<T> h = n.post_quant_conv->forward(q);
    if (n.recording) n.stages["post_quant_conv"] = h;
    return n.decoder->forward(h, n.recording ? &n.stages : nullptr);
  }
  void check_training() const {
    require(mode_ == Mode::Training, "VQModel: backward needs a forward in training mode (set_mode(Mode::Training))");
  }

  struct Net {
    std::unique_ptr<Encoder<T, B>> encoder;
    std::unique_ptr<Conv2d<T, B>> quant_conv;
    std::unique_ptr<VectorQuantizer<T, B>> quantize;
    std::unique_ptr<Conv2d<T, B>> post_quant_conv;
    std::unique_ptr<Decoder<T, B>> decoder;
    bool recording = false, quantized = false;
    StageMap<T> stages;
    Tensor<T> tiled;  // decode_tiled's result, encode_tiled's latents

    Net(Parameters<T>& p, const VQModelConfig& c, Numerics numerics) {
      const index_t L = c.latent_channels, D = c.embed_dim();
      encoder = std::make_unique<Encoder<T, B>>(p, "encoder", c, L, numerics);
      quant_conv = std::make_unique<Conv2d<T, B>>(p, "quant_conv", L, D, 1, 1, 0);
      quantize = std::make_unique<VectorQuantizer<T, B>>(p, "quantize", c.num_vq_embeddings, D, 0.25);
      post_quant_conv = std::make_unique<Conv2d<T, B>>(p, "post_quant_conv", D, L, 1, 1, 0);
      decoder = std::make_unique<Decoder<T, B>>(p, "decoder", c, numerics);
    }
  };

  VQModelConfig config_;
  Numerics numerics_;
  Mode mode_ = Mode::Training;
  std::unique_ptr<Parameters<T>> params_;
  std::unique_ptr<Net> net_;
};

}  // namespace ddpm::nn
