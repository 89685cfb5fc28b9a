#pragma once
// LatentPipeline<T, B>: latent diffusion (Rombach et al. 2022) as diffusers
// v0.40 runs it: a UNet2DModel denoises the latent of an autoencoder, whose
// decoder turns the final latent into the image. Three loops:
//
//   LDMPipeline                 (VQModel; pipeline_latent_diffusion_uncond.py)
//     x = noise * init_noise_sigma        <- read BEFORE set_timesteps (line 101)
//     set_timesteps(n); loop; decoder_input = latents / scaling_factor (line 120,
//     since diffusers 0.22; issue #6725); image = (decode(.) / 2 + 0.5).clamp(0, 1)
//   LDMSuperResolutionPipeline  (VQModel; pipeline_latent_diffusion_superresolution.py)
//     set_timesteps(n); x = noise * init_noise_sigma;
//     the UNet sees scale_model_input(cat([latents, low_res_image], dim=1), t) at every step;
//     decoder_input = latents (no scaling); image = clamp(decode(.), -1, 1) / 2 + 0.5
//   LatentKLPipeline            (AutoencoderKL; Stable Diffusion's latent convention without text;
//                                not a diffusers class, the name of the golden `pipelines` kind)
//     set_timesteps(n); x = noise * init_noise_sigma; loop;
//     decoder_input = latents / scaling_factor + shift_factor (shift_factor null: + 0);
//     image = (decode(.) * 0.5 + 0.5).clamp(0, 1)
// The loop is the library's (sampling/loop.hpp: scale_model_input, model,
// step, finite-output check) with the sampler of the scheduler config; DDIM's
// eta is the call's (diffusers passes eta to step() when step() takes it).
//
//   LatentPipeline<float, backend::Cpu> p = io::load_latent_pipeline<float, backend::Cpu>("ldm/");
//   Tensor<float> noise(p.latent_shape(1)); rng.fill_normal(noise.span());
//   auto out = p(50, noise.cview(), NoiseSource<float>(rng));   // out.image: NCHW in [0, 1]
//
// Random draws are the caller's: `initial_noise` is the N(0, I) latent
// (randn_tensor), and the NoiseSource gives every N(0, I) tensor a stochastic
// step draws, in order (an Rng, or stored tensors replayed: NoiseSource's
// Fill). on_step sees every step's model input, model output and latents.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/autoencoder_kl.hpp"
#include "ddpm/nn/module.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "ddpm/nn/vq_model.hpp"
#include "ddpm/sampling/any_sampler.hpp"
#include "ddpm/sampling/loop.hpp"

namespace ddpm {

enum class LatentPipelineKind { ldm, ldm_super_resolution, latent_kl };

// The model_index.json "_class_name" of each kind.
inline std::string_view pipeline_class_name(LatentPipelineKind k) {
  switch (k) {
    case LatentPipelineKind::ldm: return "LDMPipeline";
    case LatentPipelineKind::ldm_super_resolution: return "LDMSuperResolutionPipeline";
    case LatentPipelineKind::latent_kl: return "LatentKLPipeline";
  }
  return "?";
}

inline std::optional<LatentPipelineKind> latent_pipeline_kind(std::string_view class_name) {
  for (auto k : {LatentPipelineKind::ldm, LatentPipelineKind::ldm_super_resolution, LatentPipelineKind::latent_kl})
    if (class_name == pipeline_class_name(k)) return k;
  return std::nullopt;
}

inline std::string latent_pipeline_class_names_text() {
  return "\"LDMPipeline\", \"LDMSuperResolutionPipeline\" or \"LatentKLPipeline\"";
}

template <Scalar T, backend::Backend B>
using LatentAutoencoder = std::variant<nn::VQModel<T, B>, nn::AutoencoderKL<T, B>>;

// What one step of the loop saw (views valid during the on_step call only).
template <Scalar T>
struct LatentPipelineStep {
  index_t step = 0;
  double timestep = 0;
  ConstTensorView<T> model_input;   // after scale_model_input (super-resolution: of the concatenation)
  ConstTensorView<T> model_output;  // unet(model_input, t).sample
  ConstTensorView<T> latents;       // scheduler.step(...).prev_sample
};

// The options of one call (diffusers' __call__ arguments besides the noise).
template <Scalar T>
struct LatentPipelineCall {
  double eta = 0.0;                  // DDIM's eta (diffusers' default 0.0); other samplers: unused
  ConstTensorView<T> low_res_image;  // super-resolution only: [N, C_img, h, w] in [-1, 1]
  std::function<void(const LatentPipelineStep<T>&)> on_step;
};

template <Scalar T>
struct LatentPipelineOutput {
  Tensor<T> initial_latents;  // initial_noise * init_noise_sigma (x_T)
  Tensor<T> final_latents;
  Tensor<T> decoder_input;    // what decode() was given
  Tensor<T> decoded;          // decode(decoder_input), before clamping
  Tensor<T> image;            // NCHW in [0, 1]
  // VQ only: the codebook row chosen per latent pixel ([N, h, w], n-major) and
  // the quantizer's output (the chosen rows, NCHW).
  std::vector<std::int64_t> code_indices;
  Tensor<T> quantized;
};

template <Scalar T, backend::Backend B>
  requires std::same_as<typename B::memory_space, Host>
class LatentPipeline {
 public:
  using scalar_type = T;
  using backend_type = B;

  // Checks that the parts fit: VQModel for the LDM kinds, AutoencoderKL for
  // latent_kl; the UNet's out_channels is the decoder's latent width (VQ:
  // vq_embed_dim, KL: latent_channels), and so is its in_channels except for
  // super-resolution (latents + image channels). Models run in inference mode.
  LatentPipeline(LatentPipelineKind kind, nn::UNet2D<T, B> unet, LatentAutoencoder<T, B> autoencoder,
                 SamplerConfig scheduler)
      : kind_(kind), unet_(std::move(unet)), ae_(std::move(autoencoder)), scheduler_(std::move(scheduler)) {
    const std::string_view cls = pipeline_class_name(kind_);
    const bool vq = std::holds_alternative<nn::VQModel<T, B>>(ae_);
    require(vq == (kind_ != LatentPipelineKind::latent_kl), cls, ": needs ", vq ? "an AutoencoderKL" : "a VQModel",
            " as its autoencoder, got ", vq ? "a VQModel" : "an AutoencoderKL");
    const auto& u = unet_.config();
    const index_t d = latent_channels();
    require(u.out_channels == d, cls, ": the UNet's out_channels = ", u.out_channels, " but the ",
            vq ? "VQModel's vq_embed_dim" : "AutoencoderKL's latent_channels", " = ", d,
            ": the UNet's output is the latent the decoder takes");
    if (kind_ == LatentPipelineKind::ldm_super_resolution)
      require(u.in_channels > d, cls, ": the UNet's in_channels = ", u.in_channels,
              " leaves no channels for the low-resolution image beside the ", d, " latent channels");
    else
      require(u.in_channels == d, cls, ": the UNet's in_channels = ", u.in_channels, " but its latents have ", d,
              " channels");
    unet_.set_mode(nn::Mode::Inference);
    std::visit([](auto& m) { m.set_mode(nn::Mode::Inference); }, ae_);
  }

  LatentPipelineKind kind() const { return kind_; }
  std::string_view class_name() const { return pipeline_class_name(kind_); }
  nn::UNet2D<T, B>& unet() { return unet_; }
  const nn::UNet2D<T, B>& unet() const { return unet_; }
  LatentAutoencoder<T, B>& autoencoder() { return ae_; }
  const LatentAutoencoder<T, B>& autoencoder() const { return ae_; }
  const SamplerConfig& scheduler() const { return scheduler_; }
  bool is_vq() const { return std::holds_alternative<nn::VQModel<T, B>>(ae_); }

  // The channels of the latents (what the decoder takes).
  index_t latent_channels() const {
    if (const auto* vq = std::get_if<nn::VQModel<T, B>>(&ae_)) return vq->config().embed_dim();
    return std::get<nn::AutoencoderKL<T, B>>(ae_).config().latent_channels;
  }
  // The channels the super-resolution UNet expects of the low-resolution image.
  index_t image_channels() const { return unet_.config().in_channels - latent_channels(); }

  // The shape of `initial_noise` for `batch` images: LDMPipeline and
  // LatentKLPipeline: [batch, C, sample_size...] from the UNet's config;
  // super-resolution: the low-resolution image's batch, height and width.
  Shape latent_shape(index_t batch, ConstTensorView<T> low_res_image = {}) const {
    const index_t c = latent_channels();
    if (kind_ == LatentPipelineKind::ldm_super_resolution) {
      require(low_res_image.rank() == 4, class_name(), ": latent_shape needs the low-resolution image [N, C, h, w]");
      return Shape{low_res_image.dim(0), c, low_res_image.dim(2), low_res_image.dim(3)};
    }
    require(batch > 0, class_name(), ": batch size must be > 0, got ", batch);
    const auto& s = unet_.config().sample_size;
    require(!s.empty(), class_name(), ": the UNet config has no sample_size to size the latents by");
    // diffusers' LDMPipeline builds (unet.sample_size, unet.sample_size): square only.
    require(kind_ != LatentPipelineKind::ldm || s.size() == 1 || s[0] == s[1], class_name(),
            ": LDMPipeline makes square latents; the UNet's sample_size is [", s[0], ", ", s[1], "]");
    return Shape{batch, c, s[0], s.size() > 1 ? s[1] : s[0]};
  }

  // Runs the pipeline: `num_inference_steps` steps from `initial_noise`
  // (N(0, I), of latent_shape), stochastic steps drawing from `noise`.
  LatentPipelineOutput<T> operator()(index_t num_inference_steps, ConstTensorView<T> initial_noise,
                                     const NoiseSource<T>& noise = {}, const LatentPipelineCall<T>& call = {}) {
    const std::string_view cls = class_name();
    require(num_inference_steps > 0, cls, ": num_inference_steps must be > 0, got ", num_inference_steps);
    require(initial_noise.rank() == 4 && initial_noise.dim(0) > 0 && initial_noise.dim(1) == latent_channels(), cls,
            ": initial_noise must be [N, ", latent_channels(), ", h, w], got ", initial_noise.shape().str());
    const bool sr = kind_ == LatentPipelineKind::ldm_super_resolution;
    if (sr) {
      const auto& im = call.low_res_image;
      require(im.rank() == 4, cls, ": needs the low-resolution image [N, ", image_channels(), ", h, w] in [-1, 1]");
      require(im.dim(0) == initial_noise.dim(0) && im.dim(1) == image_channels() &&
                  im.dim(2) == initial_noise.dim(2) && im.dim(3) == initial_noise.dim(3),
              cls, ": low-resolution image ", im.shape().str(), " does not fit latents ", initial_noise.shape().str(),
              " (expected [", initial_noise.dim(0), ", ", image_channels(), ", ", initial_noise.dim(2), ", ",
              initial_noise.dim(3), "])");
    } else {
      require(call.low_res_image.data() == nullptr, cls, ": takes no low-resolution image (only ",
              pipeline_class_name(LatentPipelineKind::ldm_super_resolution), " does)");
    }

    SamplerConfig config = scheduler_;
    std::visit(
        [&](auto& c) {
          if constexpr (requires { c.eta; }) c.eta = call.eta;
        },
        config);
    AnySampler<T> sampler = make_sampler<T>(config);
    LatentPipelineOutput<T> out;
    std::visit([&](auto& s) { denoise(s, num_inference_steps, initial_noise, noise, call, out); }, sampler);
    decode(out);
    return out;
  }

 private:
  // diffusers' init_noise_sigma before set_timesteps (LDMPipeline reads it
  // there): 1 for the samplers without input scaling; for the sigma samplers
  // (Euler, ...) the largest sigma of the whole training schedule,
  // sqrt((1 - abar) / abar) at t = T - 1, or sqrt(sigma_max^2 + 1) for leading spacing.
  template <class S>
  static T init_noise_sigma_before_set_timesteps(const S& s) {
    if constexpr (variance_exploding<S>) {
      T m = 0;
      for (const T a : s.schedule().alphas_cumprod()) m = std::max(m, std::sqrt((T(1) - a) / a));
      bool leading = true;
      if constexpr (requires { s.config().timesteps.spacing; })
        leading = s.config().timesteps.spacing == TimestepSpacing::leading;
      return leading ? std::sqrt(m * m + T(1)) : m;
    } else {
      return s.init_noise_sigma();
    }
  }

  template <Sampler S>
  void denoise(S& s, index_t steps, ConstTensorView<T> initial_noise, const NoiseSource<T>& noise,
               const LatentPipelineCall<T>& call, LatentPipelineOutput<T>& out) {
    T sigma0;
    if (kind_ == LatentPipelineKind::ldm) {
      sigma0 = init_noise_sigma_before_set_timesteps(s);
      s.set_timesteps(steps);
    } else {
      s.set_timesteps(steps);
      sigma0 = s.init_noise_sigma();
    }
    Tensor<T> x(initial_noise.shape());
    for (index_t i = 0; i < x.numel(); ++i) x[i] = initial_noise[i] * sigma0;
    out.initial_latents = x;

    const bool sr = kind_ == LatentPipelineKind::ldm_super_resolution;
    const index_t N = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
    const index_t Ci = sr ? call.low_res_image.dim(1) : 0;
    Tensor<T> cat, seen_input;
    if (sr) cat = Tensor<T>(Shape{N, C + Ci, x.dim(2), x.dim(3)});
    ConstTensorView<T> model_input, model_output;
    // The UNet's input: the loop's scale_model_input(latents, t), and for
    // super-resolution the low-resolution image beside it, scaled the same way
    // (diffusers scales the concatenation; every sampler's scaling is
    // elementwise). The latents are copied first: scaling the image may reuse
    // the sampler's buffer.
    auto model = [&](ConstTensorView<T> xs, double t) -> ConstTensorView<T> {
      model_input = xs;
      if (sr) {
        for (index_t n = 0; n < N; ++n) std::copy_n(xs.data() + n * C * HW, C * HW, cat.data() + n * (C + Ci) * HW);
        const ConstTensorView<T> im = s.scale_model_input(call.low_res_image, t);
        for (index_t n = 0; n < N; ++n)
          std::copy_n(im.data() + n * Ci * HW, Ci * HW, cat.data() + (n * (C + Ci) + C) * HW);
        model_input = cat.cview();
      }
      if (call.on_step) {  // the step may overwrite xs (it can be the latents themselves)
        seen_input = Tensor<T>::copy_of(model_input);
        model_input = seen_input.cview();
      }
      model_output = unet_.forward(model_input, t);
      return model_output;
    };
    auto progress = [&](index_t k, index_t, double t, ConstTensorView<T> latents) {
      if (call.on_step) call.on_step(LatentPipelineStep<T>{k, t, model_input, model_output, latents});
    };
    const std::string who(class_name());
    detail::run_steps(s, model, x, 0, noise, progress, who.c_str());
    out.final_latents = std::move(x);
  }

  void decode(LatentPipelineOutput<T>& out) {
    const Tensor<T>& z = out.final_latents;
    Tensor<T> in(z.shape());
    if (kind_ == LatentPipelineKind::ldm) {
      // v0.40 line 120: latents / vqvae.config.scaling_factor.
      const T sf = static_cast<T>(std::get<nn::VQModel<T, B>>(ae_).config().scaling_factor);
      for (index_t i = 0; i < in.numel(); ++i) in[i] = z[i] / sf;
    } else if (kind_ == LatentPipelineKind::latent_kl) {
      const auto& c = std::get<nn::AutoencoderKL<T, B>>(ae_).config();
      const T sf = static_cast<T>(c.scaling_factor);
      if (c.shift_factor) {
        const T shift = static_cast<T>(*c.shift_factor);
        for (index_t i = 0; i < in.numel(); ++i) in[i] = z[i] / sf + shift;
      } else {
        for (index_t i = 0; i < in.numel(); ++i) in[i] = z[i] / sf;
      }
    } else {
      in = z;  // LDMSuperResolutionPipeline does not scale
    }
    out.decoder_input = std::move(in);

    if (auto* vq = std::get_if<nn::VQModel<T, B>>(&ae_)) {
      out.decoded = Tensor<T>::copy_of(vq->decode(out.decoder_input.cview()));
      const auto idx = vq->quantizer().indices();
      out.code_indices.assign(idx.begin(), idx.end());
      out.quantized = Tensor<T>::copy_of(vq->quantizer().quantized());
    } else {
      out.decoded = Tensor<T>::copy_of(std::get<nn::AutoencoderKL<T, B>>(ae_).decode(out.decoder_input.cview()));
    }

    const Tensor<T>& d = out.decoded;
    Tensor<T> image(d.shape());
    const auto clamp01 = [](T v) { return std::min(std::max(v, T(0)), T(1)); };
    for (index_t i = 0; i < d.numel(); ++i) {
      switch (kind_) {
        case LatentPipelineKind::ldm: image[i] = clamp01(d[i] / T(2) + T(0.5)); break;
        case LatentPipelineKind::ldm_super_resolution:
          image[i] = std::min(std::max(d[i], T(-1)), T(1)) / T(2) + T(0.5);
          break;
        case LatentPipelineKind::latent_kl: image[i] = clamp01(d[i] * T(0.5) + T(0.5)); break;
      }
    }
    out.image = std::move(image);
  }

  LatentPipelineKind kind_;
  nn::UNet2D<T, B> unet_;
  LatentAutoencoder<T, B> ae_;
  SamplerConfig scheduler_;
};

}  // namespace ddpm
