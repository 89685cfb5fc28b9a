#pragma once
// What a training program needs from the object that trains: one process
// (train::Trainer) and data-parallel ranks (distributed::DataParallel) both
// satisfy it, so the program is written once and one place chooses which to
// construct.
//
//   template <train::TrainingLoop Loop>
//   void run(Loop& loop, ...) {
//     if (resuming) loop.resume(path);
//     while (loop.steps_done() < steps) {
//       const train::StepStats s = loop.step(x0, {labels, {}});  // the global batch
//       if (loop.is_root()) log(s.loss);                         // the global mean loss
//       if (time_to_save) loop.save(path, {{"example", "x"}});   // checkpoint (io/checkpoint.hpp)
//       if (loop.is_root()) { train::EmaScope ema(loop.ema(), loop.model().parameters().values()); sample(); }
//     }
//   }
#include <concepts>
#include <cstdint>
#include <filesystem>

#include "ddpm/core/model.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/train/ema.hpp"
#include "ddpm/train/objective.hpp"
#include "ddpm/train/trainer.hpp"
#include "ddpm/train/training_state.hpp"

namespace ddpm::train {

template <class L>
concept TrainingLoop =
    Scalar<typename L::scalar_type> && Trainable<typename L::model_type, typename L::scalar_type> &&
    requires(L& loop, const L& cloop, ConstTensorView<typename L::scalar_type> x0,
             Conditioning<typename L::scalar_type> cond, const std::filesystem::path& path,
             const CheckpointMetadata& metadata) {
      // One step on a batch and its conditioning (the global batch: every
      // process passes the same one); the stats are the same on all of them.
      { loop.step(x0, cond) } -> std::same_as<StepStats>;
      { cloop.steps_done() } -> std::same_as<std::int64_t>;
      // The EMA of the weights, or null when the run keeps none.
      { loop.ema() } -> std::same_as<EMA<typename L::scalar_type, backend_of_t<typename L::model_type>>*>;
      { loop.model() } -> std::same_as<typename L::model_type&>;
      // Whether this process logs and writes files (samples, exports).
      { cloop.is_root() } -> std::same_as<bool>;
      // Checkpoints: collective where the loop is; see Trainer::save.
      loop.save(path, metadata);
      loop.resume(path);
    };

}  // namespace ddpm::train
