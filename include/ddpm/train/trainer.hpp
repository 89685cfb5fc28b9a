#pragma once
// The training step every example, benchmark and the data-parallel wrapper
// share: forward + loss + backward of an objective (train/objective.hpp),
// then clip the global gradient norm, Adam(W) with the learning-rate
// schedule, EMA of the weights.
//
// The default objective is DDPM's (Ho et al. 2020, Algorithm 1), DiffusionObjective:
//
//   t ~ U{0, ..., T-1},  eps ~ N(0, I)
//   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps           (q_sample)
//   loss = w(t) || model(x_t, t, c) - target ||^2            (target: eps, v or x_0)
//
// train::AutoencoderObjective (train/autoencoder_objective.hpp) trains an
// autoencoder through the same Trainer:
//   train::Trainer<float, VAE, train::AutoencoderObjective<float, VAE>> t(vae, objective, config);
//
// Randomness is drawn per *global sample*: sample g of step s uses its own
// Philox stream (seed, s * 2^32 + g). The draws therefore do not depend on
// how a global batch is split across data-parallel ranks, so N ranks at
// batch B reproduce one process at batch N * B up to the reduction's rounding.
//
// The step is split in two so a data-parallel wrapper can average gradients
// in between: compute_gradients() then apply_update(); step() does both.
// Trainer is a TrainingLoop (train/training_loop.hpp), as is the
// data-parallel wrapper, so a training program is written once for both.
//
// train/ needs only the core: checkpoints (save, resume) are written by
// io/checkpoint.hpp, which a program that calls them includes.
#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/model.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/diffusion/forward_process.hpp"
#include "ddpm/diffusion/prediction.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/train/adam.hpp"
#include "ddpm/train/ema.hpp"
#include "ddpm/train/grad_clip.hpp"
#include "ddpm/train/loss.hpp"
#include "ddpm/train/lr_schedule.hpp"
#include "ddpm/train/objective.hpp"
#include "ddpm/train/training_state.hpp"

namespace ddpm::train {

struct TrainConfig {
  // DiffusionObjective's settings (prediction_type .. null_label); other objectives ignore them.
  PredictionType prediction_type = PredictionType::epsilon;
  double min_snr_gamma = 0.0;   // > 0: min-SNR-gamma loss weighting (5 is the paper's choice)
  double grad_clip_norm = 1.0;  // <= 0: no clipping
  AdamConfig adam{};
  LrSchedule lr{};              // base_lr is taken from here; adam.lr is ignored
  bool use_ema = true;
  double ema_decay = 0.9999;
  // Classifier-free guidance training (Ho & Salimans 2022): each class label
  // is replaced by `null_label` with this probability.
  double label_dropout = 0.0;
  std::int64_t null_label = -1;
  // The same for a condition image (Conditioning::image): each sample's is
  // replaced by zeros with this probability, which classifier-free guidance
  // then uses as "no condition" (sampling/guidance.hpp).
  double condition_dropout = 0.0;
  std::uint64_t seed = 0;

  void validate() const {
    require(min_snr_gamma >= 0, "TrainConfig: min_snr_gamma must be >= 0, got ", min_snr_gamma);
    require(label_dropout >= 0 && label_dropout <= 1, "TrainConfig: label_dropout must be in [0, 1], got ",
            label_dropout);
    require(label_dropout == 0 || null_label >= 0,
            "TrainConfig: label_dropout > 0 needs null_label (the extra class index meaning 'no label')");
    require(condition_dropout >= 0 && condition_dropout <= 1, "TrainConfig: condition_dropout must be in [0, 1], got ",
            condition_dropout);
    require(!use_ema || (ema_decay >= 0 && ema_decay <= 1), "TrainConfig: ema_decay must be in [0, 1], got ",
            ema_decay);
    adam.validate();
    lr.validate();
  }
};

// The backend a model computes with: Model::backend_type, or
// backend::Reference for a host model that does not name one.
template <class Model>
struct backend_of {
  using type = backend::Reference;
};
template <class Model>
  requires requires { typename Model::backend_type; }
struct backend_of<Model> {
  using type = typename Model::backend_type;
};
template <class Model>
using backend_of_t = typename backend_of<Model>::type;

struct StepStats {
  std::int64_t step = 0;  // the step just taken (0-based)
  double loss = 0;
  double grad_norm = 0;   // before clipping
  double lr = 0;
};

// DDPM's denoising loss on a Denoiser: draws t, eps, label dropout and
// condition-image dropout per sample, forms x_t (q_sample) and the target
// (eps, v or x_0), and returns the (min-SNR-weighted) mean squared error,
// back-propagated into the model. A StochasticDenoiser (dropout) gets each
// sample's SampleStreams::dropout_rng before the forward, so its masks too
// depend only on (seed, step, global sample index).
//
// Draw order in sample i's stream rng(i): t, eps, then (with labels and
// label_dropout > 0) the label's uniform, then (with an image condition and
// condition_dropout > 0) the image's uniform.
//
// Every tensor step (q_sample, the target, the loss) runs as an op of the
// model's backend on its memory space, so it instantiates with any backend;
// the random draws are made on the host and copied in.
template <Scalar T, Denoiser<T> Model>
class DiffusionObjective {
 public:
  using B = backend_of_t<Model>;
  using M = memory_space_of_t<Model>;

  // Reads prediction_type, min_snr_gamma, label_dropout, null_label and condition_dropout from `config`.
  DiffusionObjective(const NoiseSchedule<T>& schedule, const TrainConfig& config)
      : schedule_(&schedule), config_(config) {}

  double loss_and_gradients(Model& model, ConstTensorView<T, M> x0, Conditioning<T, M> cond,
                            const SampleStreams& streams) {
    const index_t n = x0.dim(0);
    require(cond.class_labels.empty() || static_cast<index_t>(cond.class_labels.size()) == n, "Trainer: ",
            cond.class_labels.size(), " class labels for a batch of ", n);
    draw(x0, cond, streams);
    // q_sample: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (diffusion/forward_process.hpp).
    B::run(ops::batch_axpby, std::span<const T>(sqrt_abar_), x0, std::span<const T>(sqrt_one_minus_abar_),
           noise_.cview(), x_t_.view());
    target(x0);
    if (!cond.class_labels.empty()) cond.class_labels = labels_;
    if (cond.image.data() != nullptr) cond.image = condition_image(cond.image);
    if constexpr (StochasticDenoiser<Model>) {
      dropout_rngs_.clear();
      for (index_t i = 0; i < n; ++i) dropout_rngs_.push_back(streams.dropout_rng(i));
      model.set_dropout_rngs(dropout_rngs_);
    }
    const ConstTensorView<T, M> pred = model.forward(x_t_.cview(), t_values_, cond);
    dpred_.resize(pred.shape());
    const double loss = weighted_mse<B>(pred, target_.cview(), weights_, dpred_.view());
    model.backward(dpred_.cview());
    return loss;
  }

 private:
  // Draws t, eps and label dropout for every local sample from its own
  // stream (on the host), and the q_sample coefficients of each t.
  void draw(ConstTensorView<T, M> x0, const Conditioning<T, M>& cond, const SampleStreams& streams) {
    const NoiseSchedule<T>& schedule = *schedule_;
    const index_t n = x0.dim(0), per = x0.numel() / n;
    const auto num_t = static_cast<std::uint64_t>(schedule.num_train_timesteps());
    timesteps_.resize(static_cast<std::size_t>(n));
    t_values_.resize(static_cast<std::size_t>(n));
    sqrt_abar_.resize(static_cast<std::size_t>(n));
    sqrt_one_minus_abar_.resize(static_cast<std::size_t>(n));
    weights_.clear();
    labels_.assign(cond.class_labels.begin(), cond.class_labels.end());
    const bool image = cond.image.data() != nullptr;
    require(!image || (cond.image.rank() >= 1 && cond.image.dim(0) == n), "Trainer: condition image ",
            cond.image.shape().str(), " for a batch x0 ", x0.shape().str());
    drop_image_.assign(static_cast<std::size_t>(n), 0);
    Tensor<T>& drawn = host_noise();
    drawn.resize(x0.shape());
    for (index_t i = 0; i < n; ++i) {
      Rng rng = streams.rng(i);
      const auto t = static_cast<std::int64_t>(rng.uniform_int(num_t));
      const auto k = static_cast<std::size_t>(i);
      timesteps_[k] = t;
      t_values_[k] = static_cast<T>(t);
      // As diffusers' add_noise / get_velocity: in T from the schedule's alphas_cumprod.
      const T abar = schedule.alpha_cumprod(t);
      sqrt_abar_[k] = std::sqrt(abar);
      sqrt_one_minus_abar_[k] = std::sqrt(T(1) - abar);
      rng.fill_normal(std::span<T>(drawn.data() + i * per, static_cast<std::size_t>(per)));
      if (!labels_.empty() && config_.label_dropout > 0 && rng.uniform() < config_.label_dropout)
        labels_[k] = config_.null_label;
      if (image && config_.condition_dropout > 0 && rng.uniform() < config_.condition_dropout) drop_image_[k] = 1;
      if (config_.min_snr_gamma > 0)
        weights_.push_back(min_snr_weight(static_cast<double>(schedule.snr(t)), config_.min_snr_gamma,
                                          config_.prediction_type));
    }
    if constexpr (!std::same_as<M, Host>) {
      noise_.resize(x0.shape());
      B::run(ops::copy_from_host, noise_host_.cview(), noise_.view());
    }
    x_t_.resize(x0.shape());
  }

  // The condition the model sees: `image` itself, or a copy with the dropped
  // samples' images replaced by zeros.
  ConstTensorView<T, M> condition_image(ConstTensorView<T, M> image) {
    if (std::find(drop_image_.begin(), drop_image_.end(), 1) == drop_image_.end()) return image;
    image_.resize(image.shape());
    B::run(ops::copy, image, image_.view());
    for (std::size_t i = 0; i < drop_image_.size(); ++i)
      if (drop_image_[i]) B::run(ops::fill, T{}, image_.view().slice(static_cast<index_t>(i), 1));
    return image_.cview();
  }

  void target(ConstTensorView<T, M> x0) {
    target_.resize(x0.shape());
    switch (config_.prediction_type) {
      case PredictionType::epsilon: B::run(ops::copy, noise_.cview(), target_.view()); break;
      case PredictionType::v_prediction:
        // v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022).
        neg_sqrt_one_minus_abar_.resize(sqrt_one_minus_abar_.size());
        for (std::size_t i = 0; i < sqrt_one_minus_abar_.size(); ++i)
          neg_sqrt_one_minus_abar_[i] = -sqrt_one_minus_abar_[i];
        B::run(ops::batch_axpby, std::span<const T>(sqrt_abar_), noise_.cview(),
               std::span<const T>(neg_sqrt_one_minus_abar_), x0, target_.view());
        break;
      case PredictionType::sample: B::run(ops::copy, x0, target_.view()); break;
    }
  }

  // Where the noise is drawn: in place for a host model, else a host buffer
  // that is then copied in.
  Tensor<T>& host_noise() {
    if constexpr (std::same_as<M, Host>)
      return noise_;
    else
      return noise_host_;
  }

  const NoiseSchedule<T>* schedule_;
  TrainConfig config_;
  // Per-step buffers, reused.
  std::vector<std::int64_t> timesteps_, labels_;
  std::vector<T> t_values_, sqrt_abar_, sqrt_one_minus_abar_, neg_sqrt_one_minus_abar_;
  std::vector<double> weights_;
  std::vector<char> drop_image_;
  std::vector<Rng> dropout_rngs_;
  Tensor<T> noise_host_;  // device models only
  Tensor<T, M> noise_, x_t_, target_, dpred_, image_;
};

// True for DiffusionObjective<T, M> (a test that does not name the template
// with a model it rejects: clang checks that template-id's constraints).
template <class Obj>
inline constexpr bool is_diffusion_objective = false;
template <Scalar T, Denoiser<T> Model>
inline constexpr bool is_diffusion_objective<DiffusionObjective<T, Model>> = true;

template <class Model, class T>
struct default_objective {
  using type = void;
};
template <class Model, class T>
  requires Denoiser<Model, T>
struct default_objective<Model, T> {
  using type = DiffusionObjective<T, Model>;
};

// The loop around an objective: zero the gradients, the objective's forward,
// loss and backward, clip, check, Adam(W), EMA; save and resume. Zeroing,
// clipping, Adam and EMA run as ops of the model's backend.
template <Scalar T, class Model, class Obj = typename default_objective<Model, T>::type>
  requires Objective<Obj, T, Model>
class Trainer {
 public:
  using scalar_type = T;
  using model_type = Model;
  using objective_type = Obj;
  using B = backend_of_t<Model>;
  using M = memory_space_of_t<Model>;
  static_assert(std::same_as<M, typename B::memory_space>, "Trainer: the model's memory space is not its backend's");

  // The diffusion objective on `schedule` (its settings from `config`).
  Trainer(Model& model, const NoiseSchedule<T>& schedule, TrainConfig config)
    requires is_diffusion_objective<Obj>
      : Trainer(model, Obj(schedule, config), config) {}

  // Any objective.
  Trainer(Model& model, Obj objective, TrainConfig config)
      : model_(model), objective_(std::move(objective)), config_(std::move(config)),
        adam_(model.parameters().numel(), config_.adam) {
    config_.validate();
    if (config_.use_ema) ema_.emplace(std::as_const(model.parameters()).value_buffer(), config_.ema_decay);
  }

  // Forward + loss + backward for a (local) batch whose first sample has
  // global index `global_offset` within this step's global batch. Zeroes
  // the gradients first; returns the local loss (mean over the local batch).
  double compute_gradients(ConstTensorView<T, M> x0, Conditioning<T, M> cond = {}, index_t global_offset = 0) {
    require(x0.rank() >= 2 && x0.dim(0) > 0, "Trainer: x0 must be a non-empty batch [N, ...], got ",
            x0.shape().str());
    B::run(ops::fill, T{}, model_.parameters().grad_buffer());
    return objective_.loss_and_gradients(model_, x0, cond, SampleStreams{config_.seed, step_, global_offset});
  }

  // Clip, check, update, average. `loss` is the (global) loss to report.
  // A non-finite loss or gradient is an error naming the step; the weights,
  // optimizer and EMA are left untouched so a good checkpoint is never
  // overwritten by a diverged state.
  StepStats apply_update(double loss) {
    auto& params = model_.parameters();
    require(std::isfinite(loss), "training step ", step_, ": loss is ", loss,
            " (diverged; lower the learning rate or resume from the last checkpoint)");
    const double norm = clip_grad_norm<B>(params.grad_buffer(), config_.grad_clip_norm);
    require(std::isfinite(norm), "training step ", step_, ": gradient norm is ", norm, first_bad_parameter());
    const double lr = config_.lr(step_);
    adam_.step(params.value_buffer(), params.grad_buffer(), lr);
    if (ema_) ema_->update(std::as_const(params).value_buffer());
    return {step_++, loss, norm, lr};
  }

  StepStats step(ConstTensorView<T, M> x0, Conditioning<T, M> cond = {}) {
    return apply_update(compute_gradients(x0, cond, 0));
  }

  std::int64_t steps_done() const { return step_; }
  // Replaces the learning-rate schedule from the next step on (e.g. once a
  // time-limited run knows how many steps fit); steps taken keep their rates.
  void set_lr_schedule(const LrSchedule& lr) {
    lr.validate();
    config_.lr = lr;
  }
  Adam<T, B>& optimizer() { return adam_; }
  EMA<T, B>* ema() { return ema_ ? &*ema_ : nullptr; }
  const EMA<T, B>* ema() const { return ema_ ? &*ema_ : nullptr; }
  const TrainConfig& config() const { return config_; }
  Model& model() { return model_; }
  Obj& objective() { return objective_; }

  // This process logs and writes files (a data-parallel wrapper answers
  // true on rank 0 only).
  bool is_root() const { return true; }

  // Writes weights, optimizer, EMA, step and seed to one file, atomically
  // (the previous file survives a failed save).
  //
  // The format is io/checkpoint.hpp's, which this finds by argument-dependent
  // lookup when the call is compiled: include that header to save or resume.
  void save(const std::filesystem::path& path, const CheckpointMetadata& metadata = {}) const {
    save_training_state(path, model_.parameters(), adam_, ema_ ? &*ema_ : nullptr,
                        TrainingProgress{step_, Rng(config_.seed).state()}, metadata);
  }
  // Restores weights, optimizer, EMA and step; the run then continues
  // exactly as if it had not stopped. Everything (names, shapes, dtypes,
  // metadata, seed) is checked first: on error nothing has changed.
  void resume(const std::filesystem::path& path) {
    const auto progress = load_training_state(path, model_.parameters(), adam_, ema_ ? &*ema_ : nullptr,
                                              [&](const TrainingProgress& p) {
                                                require(p.rng.seed == config_.seed, path.string(),
                                                        ": checkpoint was trained with seed ", p.rng.seed,
                                                        ", this run uses seed ", config_.seed);
                                              });
    step_ = progress.step;
  }

 private:
  // Names the first parameter whose gradient is not finite.
  std::string first_bad_parameter() const {
    const auto& params = model_.parameters();
    for (const auto& p : params.infos())
      if (!B::run(ops::all_finite, params.grad(params.id(p.name))))
        return " (first non-finite gradient in parameter '" + p.name + "')";
    return "";
  }

  Model& model_;
  Obj objective_;
  TrainConfig config_;
  Adam<T, B> adam_;
  std::optional<EMA<T, B>> ema_;
  std::int64_t step_ = 0;
};

}  // namespace ddpm::train
