#pragma once
// A resumable training checkpoint in one safetensors file: weights, Adam
// moments, EMA weights, the step counter and the random state, under the
// names train/training_state.hpp lists.
//
//   io::save_training_state(path, params, adam, &ema, progress, metadata);
//   io::load_training_state(path, params, adam, &ema);   // -> progress
//
// Trainer::save and Trainer::resume (train/trainer.hpp) call these; include
// this header where they are used (train/ itself needs no file format).
//
// Values are stored in the training scalar type, so a resumed run continues
// bit for bit. Saving is atomic (temporary file + rename: a failed save
// leaves the previous file as it was); loading checks every name, shape and
// dtype before anything is modified, so a failed load leaves the training
// objects as they were.
#include <bit>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/train/adam.hpp"
#include "ddpm/train/ema.hpp"
#include "ddpm/train/training_state.hpp"

namespace ddpm::io {

namespace checkpoint_detail {

inline std::uint64_t parse_u64(const std::map<std::string, std::string>& meta, const std::string& key,
                               const std::string& file) {
  auto it = meta.find(key);
  require(it != meta.end(), file, ": training checkpoint metadata lacks '", key, "'");
  // Digits only: std::stoull alone would accept "-1" (as 2^64 - 1), "+5" and " 5".
  const std::string& s = it->second;
  const bool digits = !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
  if (digits) {
    try {
      return std::stoull(s);
    } catch (const std::out_of_range&) {
    }
  }
  fail(file, ": metadata '", key, "' = '", s, "' is not an unsigned integer below 2^64");
}

// Appends to `problems` every tensor under `prefix` that is missing or has
// the wrong shape or dtype.
template <Scalar T>
void check_group(const SafeTensors& st, const Parameters<T>& params, const std::string& prefix,
                 std::vector<std::string>& problems) {
  for (const auto& p : params.infos()) {
    const std::string key = prefix + p.name;
    if (!st.contains(key)) {
      problems.push_back("missing: " + key);
      continue;
    }
    const auto& ti = st.info(key);
    const Shape shape(ti.shape.begin(), ti.shape.end());
    if (shape != p.shape)
      problems.push_back("wrong shape: " + key + " is " + shape.str() + ", expected " + p.shape.str());
    else if (ti.dtype != dtype_of<T>())
      problems.push_back("wrong dtype: " + key + " is " + dtype_name(ti.dtype) + ", expected " + dtype_name(dtype_of<T>()) +
                         " (resume with the scalar type it was trained in)");
  }
}

// One line: the first few problems and how many more there are.
inline std::string summary(const std::vector<std::string>& problems) {
  constexpr std::size_t kShown = 3;
  std::string out;
  for (std::size_t i = 0; i < problems.size() && i < kShown; ++i) out += (i ? "; " : "") + problems[i];
  if (problems.size() > kShown) out += "; and " + std::to_string(problems.size() - kShown) + " more";
  return out;
}

template <Scalar T>
void read_group(const SafeTensors& st, const Parameters<T>& params, const std::string& prefix, std::span<T> dst) {
  for (const auto& p : params.infos()) {
    const auto t = st.get<T>(prefix + p.name);
    std::copy(t.begin(), t.end(), dst.begin() + p.offset);
  }
}

template <Scalar T>
void write_group(SafeTensorsWriter& w, const Parameters<T>& params, const std::string& prefix,
                 std::span<const T> src) {
  for (const auto& p : params.infos())
    w.add(prefix + p.name, src.data() + p.offset, std::span<const index_t>(p.shape.begin(), p.shape.end()));
}

}  // namespace checkpoint_detail

// Saves a checkpoint atomically; `ema` may be null.
template <Scalar T, class B>
void save_training_state(const std::filesystem::path& path, const Parameters<T>& params,
                         const train::Adam<T, B>& adam, std::type_identity_t<const train::EMA<T, B>*> ema,
                         const train::TrainingProgress& progress,
                         const train::CheckpointMetadata& extra_metadata = {}) {
  namespace key = train::checkpoint_keys;
  const auto u64 = [](auto v) { return std::to_string(static_cast<std::uint64_t>(v)); };
  SafeTensorsWriter w;
  checkpoint_detail::write_group<T>(w, params, key::kParams, params.values());
  checkpoint_detail::write_group<T>(w, params, key::kAdamExpAvg, adam.exp_avg());
  checkpoint_detail::write_group<T>(w, params, key::kAdamExpAvgSq, adam.exp_avg_sq());
  if (ema) checkpoint_detail::write_group<T>(w, params, key::kEma, ema->weights());
  for (auto& [k, v] : extra_metadata) w.set_metadata(k, v);
  w.set_metadata(key::kKind, key::kKindValue);
  w.set_metadata(key::kScalar, dtype_name(dtype_of<T>()));
  w.set_metadata(key::kStep, u64(progress.step));
  w.set_metadata(key::kAdamStep, u64(adam.step_count()));
  w.set_metadata(key::kEmaUpdates, u64(ema ? ema->updates() : 0));
  w.set_metadata(key::kRngSeed, u64(progress.rng.seed));
  w.set_metadata(key::kRngStream, u64(progress.rng.stream));
  w.set_metadata(key::kRngCounter, u64(progress.rng.counter));
  w.set_metadata(key::kRngHasSpare, progress.rng.has_spare ? "1" : "0");
  w.set_metadata(key::kRngSpareBits, u64(std::bit_cast<std::uint64_t>(progress.rng.spare)));
  w.save(path);
}

// Loads a checkpoint written by save_training_state into existing objects.
// Everything is validated first; on error (one line naming the file and
// the first mismatches) nothing has been modified. `check`, when given,
// sees the checkpoint's progress before anything is modified and may throw
// to refuse it (Trainer::resume checks the seed).
template <Scalar T, class B>
train::TrainingProgress load_training_state(const std::filesystem::path& path, Parameters<T>& params,
                                            train::Adam<T, B>& adam, std::type_identity_t<train::EMA<T, B>*> ema,
                                            const std::function<void(const train::TrainingProgress&)>& check = {}) {
  namespace key = train::checkpoint_keys;
  const auto st = SafeTensors::load(path);
  const auto& meta = st.metadata();
  const std::string file = path.string();
  auto kind = meta.find(key::kKind);
  require(kind != meta.end() && kind->second == key::kKindValue, file, ": not a ddpm training checkpoint (metadata '",
          key::kKind, "' should be '", key::kKindValue, "')");
  std::vector<std::string> problems;
  checkpoint_detail::check_group(st, params, key::kParams, problems);
  checkpoint_detail::check_group(st, params, key::kAdamExpAvg, problems);
  checkpoint_detail::check_group(st, params, key::kAdamExpAvgSq, problems);
  if (ema) checkpoint_detail::check_group(st, params, key::kEma, problems);
  require(problems.empty(), file, ": training checkpoint does not match the model (", problems.size(),
          " problems): ", checkpoint_detail::summary(problems));
  const auto number = [&](const char* k) { return checkpoint_detail::parse_u64(meta, k, file); };
  train::TrainingProgress progress;
  progress.step = static_cast<std::int64_t>(number(key::kStep));
  const auto adam_step = static_cast<std::int64_t>(number(key::kAdamStep));
  const auto ema_updates = static_cast<std::int64_t>(number(key::kEmaUpdates));
  progress.rng.seed = number(key::kRngSeed);
  progress.rng.stream = number(key::kRngStream);
  progress.rng.counter = number(key::kRngCounter);
  progress.rng.has_spare = number(key::kRngHasSpare) != 0;
  progress.rng.spare = std::bit_cast<double>(number(key::kRngSpareBits));
  require(progress.step >= 0 && adam_step >= 0 && ema_updates >= 0, file, ": metadata step counts (", key::kStep,
          ", ", key::kAdamStep, ", ", key::kEmaUpdates, ") must be below 2^63");
  if (check) check(progress);
  // All checks passed: now modify.
  checkpoint_detail::read_group<T>(st, params, key::kParams, params.values());
  checkpoint_detail::read_group<T>(st, params, key::kAdamExpAvg, adam.exp_avg());
  checkpoint_detail::read_group<T>(st, params, key::kAdamExpAvgSq, adam.exp_avg_sq());
  adam.set_step_count(adam_step);
  if (ema) {
    checkpoint_detail::read_group<T>(st, params, key::kEma, ema->weights());
    ema->set_updates(ema_updates);
  }
  return progress;
}

}  // namespace ddpm::io

// Trainer::save and Trainer::resume call these unqualified with arguments of
// train/ types, so argument-dependent lookup finds them here: that is how
// train/ uses the format without depending on it.
namespace ddpm::train {
using io::load_training_state;
using io::save_training_state;
}  // namespace ddpm::train
