#pragma once
// What a resumable training run is made of, and the names its checkpoint
// gives each part. The file format itself (safetensors, which needs the JSON
// library) lives in io/checkpoint.hpp; train/ needs only this description.
//
//   params/<name>          the model's parameters (diffusers state_dict names)
//   adam.exp_avg/<name>    Adam's first moment
//   adam.exp_avg_sq/<name> Adam's second moment
//   ema/<name>             EMA weights (when EMA is used)
//   metadata               step, Adam step, EMA update count, Rng state
//                          (the keys below), plus the caller's own entries
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>

#include "ddpm/core/random.hpp"

namespace ddpm::train {

// Where a run is: the number of steps taken and the random state.
struct TrainingProgress {
  std::int64_t step = 0;
  Rng::State rng;
};

// Free-form string entries stored beside the state (e.g. {"example", "mnist"}).
using CheckpointMetadata = std::map<std::string, std::string>;

namespace checkpoint_keys {
inline constexpr const char* kParams = "params/";
inline constexpr const char* kAdamExpAvg = "adam.exp_avg/";
inline constexpr const char* kAdamExpAvgSq = "adam.exp_avg_sq/";
inline constexpr const char* kEma = "ema/";
inline constexpr const char* kKind = "ddpm.kind";  // = kKindValue
inline constexpr const char* kKindValue = "training_state";
inline constexpr const char* kScalar = "ddpm.scalar";
inline constexpr const char* kStep = "ddpm.step";
inline constexpr const char* kAdamStep = "ddpm.adam_step";
inline constexpr const char* kEmaUpdates = "ddpm.ema_updates";
inline constexpr const char* kRngSeed = "ddpm.rng.seed";
inline constexpr const char* kRngStream = "ddpm.rng.stream";
inline constexpr const char* kRngCounter = "ddpm.rng.counter";
inline constexpr const char* kRngHasSpare = "ddpm.rng.has_spare";
inline constexpr const char* kRngSpareBits = "ddpm.rng.spare_bits";
}  // namespace checkpoint_keys

}  // namespace ddpm::train
