#pragma once
// A resumable training checkpoint: weights, Adam moments, EMA weights, the
// step counter and the random state, in one safetensors file.
//
//   params/<name>          the model's parameters (diffusers state_dict names)
//   adam.exp_avg/<name>    Adam's first moment
//   adam.exp_avg_sq/<name> Adam's second moment
//   ema/<name>             EMA weights (when EMA is used)
//   __metadata__           step, Adam step, EMA update count, Rng state
//
// Values are stored in the training scalar type, so a resumed run continues
// bit for bit. Saving is atomic (temporary file + rename); loading checks
// every name, shape and dtype before anything is modified, so a failed load
// leaves the training objects as they were.
#include <bit>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <type_traits>

#include "ddpm/core/error.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/nn/parameters.hpp"
#include "ddpm/train/adam.hpp"
#include "ddpm/train/ema.hpp"

namespace ddpm::train {

struct TrainingProgress {
  std::int64_t step = 0;
  Rng::State rng;
};

namespace detail {

inline std::string u64_str(std::uint64_t v) { return std::to_string(v); }

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

// Copies the tensors under `prefix` into `dst` (flat, in registration order)
// after checking each one; throws before writing anything on a mismatch.
template <Scalar T>
void check_group(const io::SafeTensors& st, const nn::Parameters<T>& params, const std::string& prefix) {
  std::string problems;
  for (const auto& p : params.infos()) {
    const std::string key = prefix + p.name;
    if (!st.contains(key)) {
      problems += "\n  missing: " + key;
      continue;
    }
    const auto& ti = st.info(key);
    if (Shape(ti.shape.begin(), ti.shape.end()) != p.shape)
      problems += "\n  wrong shape: " + key + " is " + Shape(ti.shape.begin(), ti.shape.end()).str() + ", expected " +
                  p.shape.str();
    else if (ti.dtype != io::dtype_of<T>())
      problems += "\n  wrong dtype: " + key + " is " + io::dtype_name(ti.dtype) + ", expected " +
                  io::dtype_name(io::dtype_of<T>()) + " (resume with the scalar type it was trained in)";
  }
  require(problems.empty(), st.path(), ": training checkpoint does not match the model:", problems);
}

template <Scalar T>
void read_group(const io::SafeTensors& st, const nn::Parameters<T>& params, const std::string& prefix,
                std::span<T> dst) {
  for (const auto& p : params.infos()) {
    const auto t = st.get<T>(prefix + p.name);
    std::copy(t.begin(), t.end(), dst.begin() + p.offset);
  }
}

template <Scalar T>
void write_group(io::SafeTensorsWriter& w, const nn::Parameters<T>& params, const std::string& prefix,
                 std::span<const T> src) {
  for (const auto& p : params.infos())
    w.add(prefix + p.name, src.data() + p.offset, std::span<const index_t>(p.shape.begin(), p.shape.end()));
}

}  // namespace detail

// Saves a checkpoint atomically; `ema` may be null.
template <Scalar T, class B>
void save_training_state(const std::filesystem::path& path, const nn::Parameters<T>& params, const Adam<T, B>& adam,
                         std::type_identity_t<const EMA<T, B>*> ema, const TrainingProgress& progress,
                         const std::map<std::string, std::string>& extra_metadata = {}) {
  io::SafeTensorsWriter w;
  detail::write_group<T>(w, params, "params/", params.values());
  detail::write_group<T>(w, params, "adam.exp_avg/", adam.exp_avg());
  detail::write_group<T>(w, params, "adam.exp_avg_sq/", adam.exp_avg_sq());
  if (ema) detail::write_group<T>(w, params, "ema/", ema->weights());
  for (auto& [k, v] : extra_metadata) w.set_metadata(k, v);
  w.set_metadata("ddpm.kind", "training_state");
  w.set_metadata("ddpm.scalar", io::dtype_name(io::dtype_of<T>()));
  w.set_metadata("ddpm.step", detail::u64_str(static_cast<std::uint64_t>(progress.step)));
  w.set_metadata("ddpm.adam_step", detail::u64_str(static_cast<std::uint64_t>(adam.step_count())));
  w.set_metadata("ddpm.ema_updates", detail::u64_str(ema ? static_cast<std::uint64_t>(ema->updates()) : 0));
  w.set_metadata("ddpm.rng.seed", detail::u64_str(progress.rng.seed));
  w.set_metadata("ddpm.rng.stream", detail::u64_str(progress.rng.stream));
  w.set_metadata("ddpm.rng.counter", detail::u64_str(progress.rng.counter));
  w.set_metadata("ddpm.rng.has_spare", progress.rng.has_spare ? "1" : "0");
  w.set_metadata("ddpm.rng.spare_bits", detail::u64_str(std::bit_cast<std::uint64_t>(progress.rng.spare)));
  w.save(path);
}

// Loads a checkpoint written by save_training_state into existing objects.
// Everything is validated first; on error nothing has been modified.
// `check`, when given, sees the checkpoint's progress before anything is
// modified and may throw to refuse it (Trainer::resume checks the seed).
template <Scalar T, class B>
TrainingProgress load_training_state(const std::filesystem::path& path, nn::Parameters<T>& params, Adam<T, B>& adam,
                                     std::type_identity_t<EMA<T, B>*> ema,
                                     const std::function<void(const TrainingProgress&)>& check = {}) {
  const auto st = io::SafeTensors::load(path);
  const auto& meta = st.metadata();
  const std::string file = path.string();
  auto kind = meta.find("ddpm.kind");
  require(kind != meta.end() && kind->second == "training_state", file,
          ": not a ddpm training checkpoint (metadata 'ddpm.kind' should be 'training_state')");
  detail::check_group(st, params, "params/");
  detail::check_group(st, params, "adam.exp_avg/");
  detail::check_group(st, params, "adam.exp_avg_sq/");
  if (ema) detail::check_group(st, params, "ema/");
  TrainingProgress progress;
  progress.step = static_cast<std::int64_t>(detail::parse_u64(meta, "ddpm.step", file));
  const auto adam_step = static_cast<std::int64_t>(detail::parse_u64(meta, "ddpm.adam_step", file));
  const auto ema_updates = static_cast<std::int64_t>(detail::parse_u64(meta, "ddpm.ema_updates", file));
  progress.rng.seed = detail::parse_u64(meta, "ddpm.rng.seed", file);
  progress.rng.stream = detail::parse_u64(meta, "ddpm.rng.stream", file);
  progress.rng.counter = detail::parse_u64(meta, "ddpm.rng.counter", file);
  progress.rng.has_spare = detail::parse_u64(meta, "ddpm.rng.has_spare", file) != 0;
  progress.rng.spare = std::bit_cast<double>(detail::parse_u64(meta, "ddpm.rng.spare_bits", file));
  require(progress.step >= 0 && adam_step >= 0 && ema_updates >= 0, file,
          ": metadata step counts (ddpm.step, ddpm.adam_step, ddpm.ema_updates) must be below 2^63");
  if (check) check(progress);
  // All checks passed: now modify.
  detail::read_group<T>(st, params, "params/", params.values());
  detail::read_group<T>(st, params, "adam.exp_avg/", adam.exp_avg());
  detail::read_group<T>(st, params, "adam.exp_avg_sq/", adam.exp_avg_sq());
  adam.set_step_count(adam_step);
  if (ema) {
    detail::read_group<T>(st, params, "ema/", ema->weights());
    ema->set_updates(ema_updates);
  }
  return progress;
}

}  // namespace ddpm::train
