#pragma once
// The model contract between the layers (nn/) and everything that drives a
// model (sampling/, train/, distributed/, io/): what a denoiser is given
// besides (x_t, t), and the operations a trainable denoiser offers. nn/
// implements it; nothing outside nn/ needs to include nn/ to use a model.
#include <concepts>
#include <cstdint>
#include <span>

#include "ddpm/core/parameters.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm {

// What a denoiser sees besides (x_t, t): class labels (U-Net class
// embeddings, classifier-free guidance), a conditioning vector per batch
// element (the MLP denoiser of the arcsin example) and/or a conditioning
// image per batch element. All optional.
//
// The image is concatenated to the model input along the channels (SR3,
// Saharia et al. 2021; Palette; diffusers' LDMSuperResolutionPipeline):
// the network sees cat([x_t, image], dim=1), so its in_channels is the noise
// channels plus the condition channels and its output has the noise
// channels. It stays fixed through a sampling loop; classifier-free guidance
// replaces it by zeros for the unconditional prediction, as training does
// with probability train::TrainConfig::condition_dropout.
//
// Class labels are host data whatever the model's memory space M; the
// vector and the image live in M.
template <Scalar T, class M = Host>
struct Conditioning {
  std::span<const std::int64_t> class_labels;  // [N] or empty
  ConstTensorView<T, M> vector;                // [N, C] or empty (data() == nullptr)
  ConstTensorView<T, M> image = {};            // [N, C_cond, H, W] (x_t's H, W) or empty
};

// The memory space a model computes in: Model::memory_space, Host when it
// does not say.
template <class Model>
struct memory_space_of {
  using type = Host;
};
template <class Model>
  requires requires { typename Model::memory_space; }
struct memory_space_of<Model> {
  using type = typename Model::memory_space;
};
template <class Model>
using memory_space_of_t = typename memory_space_of<Model>::type;

// A network that maps (x_t, t, condition) to a prediction and back-propagates:
// what the trainer (train/trainer.hpp) and the samplers' model wrappers use.
// forward returns a view of the model's own output buffer; backward takes
// dL/doutput, accumulates parameter gradients and returns dL/dx_t. Tensors
// (and the parameters) are in the model's memory space; timesteps are host data.
template <class Model, class T, class M = memory_space_of_t<Model>>
concept Denoiser =
    requires(Model& m, ConstTensorView<T, M> x, std::span<const T> t, const Conditioning<T, M>& c) {
      { m.parameters() } -> std::same_as<Parameters<T, M>&>;
      { m.forward(x, t, c) } -> std::convertible_to<ConstTensorView<T, M>>;
      { m.backward(x) } -> std::convertible_to<ConstTensorView<T, M>>;
    };

// A denoiser whose training forward is stochastic (dropout) and draws from
// one random stream per batch element, given before each training forward
// (the trainer passes train::SampleStreams::dropout_rng of each sample).
// The streams are used by the next forward only.
template <class Model>
concept StochasticDenoiser = requires(Model& m, std::span<const Rng> per_sample) {
  m.set_dropout_rngs(per_sample);
};

}  // namespace ddpm
