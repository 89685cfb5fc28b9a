#pragma once
// What train::Trainer trains: a model with a flat parameter buffer
// (Trainable), and an objective that runs forward, loss and backward on a
// local batch (Objective). The Trainer owns everything around it (zeroing
// the gradients, clipping, Adam(W), EMA, the step counter, checkpoints), so
// one training loop, and distributed::DataParallel over it, serves every
// objective:
//
//   train::DiffusionObjective      (train/trainer.hpp)   DDPM's denoising loss on a Denoiser
//   train::AutoencoderObjective    (train/autoencoder_objective.hpp)
//                                  reconstruction + beta KL / codebook + commitment loss
//
// Randomness is drawn per *global sample*: sample g of step s uses its own
// Philox stream (seed, s * 2^32 + g) (SampleStreams). The draws therefore do
// not depend on how a global batch is split across data-parallel ranks, so
// N ranks at batch B reproduce one process at batch N * B up to the
// reduction's rounding, provided the objective's loss is a mean over the
// batch (the gradients of equal shards are averaged).
#include <concepts>
#include <cstdint>

#include "ddpm/core/model.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::train {

// A model whose parameters (values and gradients, in memory space M) the Trainer updates.
template <class Model, class T, class M = memory_space_of_t<Model>>
concept Trainable = requires(Model& m) {
  { m.parameters() } -> std::same_as<Parameters<T, M>&>;
};

// The noise streams of one step's local batch.
struct SampleStreams {
  std::uint64_t seed = 0;
  std::int64_t step = 0;
  index_t global_offset = 0;  // global index of the local batch's first sample

  // The stream of local sample i: (seed, step << 32 | (global_offset + i)).
  Rng rng(index_t i) const {
    return Rng(seed, (static_cast<std::uint64_t>(step) << 32) | static_cast<std::uint64_t>(global_offset + i));
  }
  // The dropout stream of local sample i (a StochasticDenoiser's masks): the
  // same Philox stream from block 2^62 on, so it never meets the objective's
  // draws from rng(i), which start at block 0.
  Rng dropout_rng(index_t i) const {
    Rng::State s = rng(i).state();
    s.counter = std::uint64_t{1} << 62;
    return Rng(s);
  }
};

// loss_and_gradients: forward on the local batch x0 [N, ...] (and its
// conditioning), the loss (the mean over the local batch, returned), and
// backward, accumulating dL/dparameters into the model's (zeroed) gradients.
template <class O, class T, class Model, class M = memory_space_of_t<Model>>
concept Objective = Trainable<Model, T, M> &&
    requires(O& o, Model& m, ConstTensorView<T, M> x0, const Conditioning<T, M>& cond, const SampleStreams& s) {
      { o.loss_and_gradients(m, x0, cond, s) } -> std::convertible_to<double>;
    };

}  // namespace ddpm::train
