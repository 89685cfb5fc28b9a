#pragma once
// `mnist_diffusion train`: the library's training step (train/trainer.hpp)
// on MNIST-style digits, class-conditional with label dropout for
// classifier-free guidance, EMA weights, periodic checkpoints (resumable
// bit for bit) and sample grids. With --superres-scales the same loop trains
// the super-resolution model (superres.hpp): each batch's condition image is
// the bicubic upsampling of its degraded digits (superres_condition).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ddpm/core/random.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/io/checkpoint.hpp"
#include "ddpm/io/diffusers.hpp"
#include "ddpm/io/image.hpp"
#include "ddpm/train/ema.hpp"
#include "ddpm/train/trainer.hpp"
#include "ddpm/train/training_loop.hpp"
#include "../common/progress.hpp"
#include "generate.hpp"
#include "mnist_data.hpp"
#include "superres.hpp"
#ifdef DDPM_EXAMPLES_MPI
#include <cstdlib>

#include "ddpm/distributed/data_parallel.hpp"
#endif

namespace mnist {

struct TrainOptions {
  fs::path data = "data/mnist";
  fs::path out = "out/mnist_train";
  int width = 16;
  std::int64_t steps = 2000;
  ddpm::index_t batch = 64;
  double lr = 1.5e-3;
  std::int64_t warmup = 100;
  double ema_decay = 0.999;
  double label_dropout = 0.1;
  std::int64_t checkpoint_every = 200;
  std::int64_t sample_every = 500;
  std::uint64_t seed = 0;
  bool resume = false;
  // > 0: train for this many seconds of wall time (TimeBudget) instead of a
  // fixed step count; `steps` is then only an upper bound.
  double time_limit = 0;
  // Non-empty: train the super-resolution model (superres.hpp) instead of
  // the class-conditional one, each sample at one of these scales.
  std::vector<int> superres_scales;
  double condition_dropout = 0.0;  // of the super-resolution condition image (for guidance)
};

// Data order: epoch e visits the training set in the order of a
// Fisher-Yates shuffle drawn from Rng(seed, 2^40 + e), so batch s is a pure
// function of (seed, s) and a resumed run sees the same batches.
class EpochOrder {
 public:
  EpochOrder(ddpm::index_t n, std::uint64_t seed) : n_(n), seed_(seed) {}
  void batch(std::int64_t step, ddpm::index_t size, std::vector<ddpm::index_t>& out) {
    out.resize(static_cast<std::size_t>(size));
    for (ddpm::index_t k = 0; k < size; ++k) {
      const std::int64_t p = step * size + k;
      const std::int64_t e = p / n_;
      if (e != epoch_) shuffle(e);
      out[static_cast<std::size_t>(k)] = perm_[static_cast<std::size_t>(p % n_)];
    }
  }

 private:
  void shuffle(std::int64_t e) {
    epoch_ = e;
    perm_.resize(static_cast<std::size_t>(n_));
    for (ddpm::index_t i = 0; i < n_; ++i) perm_[static_cast<std::size_t>(i)] = i;
    ddpm::Rng rng(seed_, (std::uint64_t{1} << 40) + static_cast<std::uint64_t>(e));
    for (ddpm::index_t i = n_ - 1; i > 0; --i)
      std::swap(perm_[static_cast<std::size_t>(i)],
                perm_[static_cast<std::size_t>(rng.uniform_int(static_cast<std::uint64_t>(i + 1)))]);
  }
  ddpm::index_t n_;
  std::uint64_t seed_;
  std::int64_t epoch_ = -1;
  std::vector<ddpm::index_t> perm_;
};

// A wall-clock budget for `train --time-limit`: the run times its first
// steps and fits the step count to the time left, so the cosine decay of the
// learning rate ends at the limit, not part-way; every kRefitEvery steps it
// fits again from the mean time of the steps since the first fit (sample
// grids and checkpoints included), and it stops early should it still run
// over. The limit counts from the command's start (loading the data
// included) and keeps a reserve for the final checkpoint, export and sample
// grid. Which step count fits depends on the machine, so the run prints it.
class TimeBudget {
 public:
  static constexpr std::int64_t kSkipped = 3;       // first steps, slower (buffers are allocated): not timed
  static constexpr std::int64_t kTimed = 20;        // then this many steps are timed
  static constexpr std::int64_t kRefitEvery = 20;   // steps between later fits

  // `now`: seconds on a monotonic clock (a test passes a simulated one); the
  // budget starts at construction.
  explicit TimeBudget(double limit_s, std::function<double()> now = steady_seconds)
      : limit_(limit_s), now_(std::move(now)), start_(now_()) {}

  double elapsed() const { return now_() - start_; }
  // Seconds the steps may use: 3% of the limit and 2 s are kept for the
  // final checkpoint, export and sample grid.
  double usable() const { return std::max(0.0, 0.97 * limit_ - 2.0); }

  // Call after every step with the steps done so far (`first`: where this
  // invocation started); returns a new total, at most `cap`, when the timing
  // ends and at each refit.
  std::optional<std::int64_t> fit(std::int64_t first, std::int64_t done, std::int64_t cap) {
    const std::int64_t fit_at = first + kSkipped + kTimed;
    if (done == first + kSkipped) timed_from_ = elapsed();
    if (done == fit_at) {
      fitted_at_ = elapsed();
      step_s_ = (fitted_at_ - timed_from_) / static_cast<double>(kTimed);
    } else if (done > fit_at && (done - fit_at) % kRefitEvery == 0) {
      step_s_ = (elapsed() - fitted_at_) / static_cast<double>(done - fit_at);
    } else {
      return std::nullopt;
    }
    const double left = usable() - elapsed();
    const double more = step_s_ > 0 ? std::max(0.0, left / step_s_) : static_cast<double>(cap);
    return std::clamp<std::int64_t>(done + static_cast<std::int64_t>(std::min(more, 1e15)), done, std::max(done, cap));
  }
  // True when one more step at the timed rate would end past the usable
  // time (before the timing ends: when that time is already spent).
  bool out_of_time() const { return elapsed() + step_s_ > usable(); }
  // The mean time of a step at the last fit.
  double step_seconds() const { return step_s_; }

 private:
  static double steady_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  double limit_;
  std::function<double()> now_;
  double start_;
  double timed_from_ = 0, fitted_at_ = 0, step_s_ = 0;
};

// Saves the EMA weights (what sampling uses) as a diffusers folder.
template <class Ema>
void export_ema(UNet& unet, const Ema* ema, const fs::path& dir) {
  const ddpm::train::EmaScope<float> use_ema(ema, unet.parameters().values());
  ddpm::io::save_unet2d(unet, dir);
}

// A grid of `per_class` samples of every digit, one row per digit.
inline void sample_grid(UNet& unet, const fs::path& png, int per_class, GenerateOptions o) {
  std::vector<std::int64_t> labels;
  for (int d = 0; d < kNumClasses; ++d)
    for (int k = 0; k < per_class; ++k) labels.push_back(d);
  const auto images = generate(unet, labels, o);
  ddpm::io::write_png(png, ddpm::io::make_grid(images.cview(), per_class));
}

// Steps 3 to 5, the same for one process (train::Trainer) and for MPI ranks
// (distributed::DataParallel): both are a train::TrainingLoop.
// `budget` (with --time-limit) fits the step count; `set_lr` then gives the
// loop the schedule for it.
template <ddpm::train::TrainingLoop Loop, class SetLr>
std::int64_t run_training(Loop& loop, const Dataset& data, const TrainOptions& o, TimeBudget* budget, SetLr set_lr) {
  UNet& unet = loop.model();
  const bool root = loop.is_root();  // logs and writes samples and exports
  const fs::path ckpt = o.out / "checkpoint.safetensors";
  if (o.resume) {
    loop.resume(ckpt);  // data-parallel: rank 0 reads and broadcasts
    if (root)
      std::fprintf(stderr, "resumed from %s at step %lld\n", ckpt.string().c_str(),
                   static_cast<long long>(loop.steps_done()));
  }

  EpochOrder order(data.size(), o.seed);
  std::vector<ddpm::index_t> idx;
  ddpm::Tensor<float> x0, cond;
  std::vector<std::int64_t> labels;
  const bool superres = !o.superres_scales.empty();
  GenerateOptions preview{.sampler = "dpm++", .steps = 20, .guidance = 3.0, .seed = 1, .progress = false};
  const std::int64_t first = loop.steps_done();
  std::int64_t total = o.steps;  // with a time limit: the cap until the steps are fitted
  examples::Progress bar("train", total, first, 30.0);
  double smooth = -1;
  bool out_of_time = false;
  while (!out_of_time && loop.steps_done() < total) {
    // 3. One step on the next (global) batch; the bar shows a running mean of the loss.
    order.batch(loop.steps_done(), o.batch, idx);
    gather(data, idx, x0, labels);
    unet.set_mode(ddpm::nn::Mode::Training);
    if (superres) superres_condition(x0.cview(), o.superres_scales, o.seed, loop.steps_done(), cond);
    const auto st = superres ? loop.step(x0.cview(), {{}, {}, cond.cview()}) : loop.step(x0.cview(), {labels, {}});
    smooth = smooth < 0 ? st.loss : 0.98 * smooth + 0.02 * st.loss;
    const std::int64_t done = st.step + 1;
    if (budget) {
      if (const auto fitted = budget->fit(first, done, o.steps)) {
        if (root && done == first + TimeBudget::kSkipped + TimeBudget::kTimed)  // the first fit
          std::fprintf(stderr, "time limit %gs: %.3f s a step, %lld steps fit\n", o.time_limit, budget->step_seconds(),
                       static_cast<long long>(*fitted));
        total = *fitted;
        set_lr(total);
        bar.set_total(total);
      }
      out_of_time = budget->out_of_time();
    }
    const bool last = out_of_time || done == total;
    if (out_of_time) bar.set_total(done);
    if (root) bar.update(done, smooth);
    // 4. Checkpoint (weights, Adam, EMA, step: --resume continues from here)
    //    and the EMA weights as a diffusers folder.
    if (done % o.checkpoint_every == 0 || last) {
      loop.save(ckpt, {{"example", "mnist_diffusion"}});
      if (root) export_ema(unet, loop.ema(), o.out / "model");
    }
    // 5. A sample grid from the EMA weights now and then.
    if (root && !superres && o.sample_every > 0 && (done % o.sample_every == 0 || last)) {
      const ddpm::train::EmaScope<float> use_ema(loop.ema(), unet.parameters().values());
      char name[64];
      std::snprintf(name, sizeof name, "samples_%06lld.png", static_cast<long long>(done));
      sample_grid(unet, o.out / name, 2, preview);
    }
  }
  const double secs = root ? bar.finish() : 0.0;
  if (!root) return loop.steps_done();
  if (out_of_time && loop.steps_done() < total)
    std::fprintf(stderr, "time limit reached after %lld of %lld steps\n", static_cast<long long>(loop.steps_done()),
                 static_cast<long long>(total));
  std::fprintf(stderr, "trained %lld steps in %s; EMA model in %s\n", static_cast<long long>(loop.steps_done()),
               examples::format_duration(secs).c_str(), (o.out / "model").string().c_str());
  return loop.steps_done();
}

// Trains as `o` says; returns the steps done (with a time limit, those that fitted).
inline std::int64_t train_steps(const TrainOptions& o) {
  std::optional<TimeBudget> budget;
  if (o.time_limit > 0) budget.emplace(o.time_limit);
  const Dataset data = load_split(o.data, "train");
  std::fprintf(stderr, "training on %lld digits from %s\n", static_cast<long long>(data.size()), o.data.string().c_str());

  // 1. The network (PyTorch's default initialisation) and the noise schedule
  //    (diffusers' defaults: 1000 steps, linear betas 1e-4 .. 0.02).
  const bool superres = !o.superres_scales.empty();
  UNet unet(superres ? superres_unet_config(o.width) : unet_config(o.width));
  ddpm::Rng init_rng(o.seed, 0xC0FFEE);
  unet.init(init_rng);
  std::fprintf(stderr, "U-Net: %lld parameters\n", static_cast<long long>(unet.num_parameters()));
  const ddpm::NoiseSchedule<float> schedule(ddpm::ScheduleConfig{});

  // 2. The training step: epsilon prediction, Adam with warm-up and cosine
  //    decay, gradient clipping, EMA, and label dropout to the null label.
  // With a time limit the decay waits until the step count is fitted (the
  // warm-up does not depend on it).
  const auto schedule_for = [&](std::int64_t total) {
    return ddpm::train::LrSchedule{.base_lr = o.lr, .warmup_steps = std::min(o.warmup, total / 10),
                                   .total_steps = total, .min_lr = o.lr * 0.05};
  };
  ddpm::train::TrainConfig tc;
  tc.lr = budget ? ddpm::train::LrSchedule{.base_lr = o.lr, .warmup_steps = o.warmup, .total_steps = 0, .min_lr = 0}
                 : schedule_for(o.steps);
  tc.ema_decay = o.ema_decay;
  tc.label_dropout = superres ? 0.0 : o.label_dropout;
  tc.condition_dropout = o.condition_dropout;
  tc.null_label = kNullLabel;
  tc.seed = o.seed;
  ddpm::train::Trainer<float, UNet> trainer(unet, schedule, tc);
  fs::create_directories(o.out);

  // Under mpirun the same program trains data-parallel: --batch is the
  // global batch, each rank computes its shard, gradients are averaged with
  // one allreduce, rank 0 alone writes files (distributed/data_parallel.hpp).
  // N ranks at batch B give the same weights as one process at batch B.
#ifdef DDPM_EXAMPLES_MPI
  // An MPI launcher (mpirun / mpiexec / srun) sets one of these; a plain run
  // never initialises MPI.
  const auto launched_by_mpi = [] {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
      if (std::getenv(v)) return true;
    return false;
  };
  if (launched_by_mpi()) {
    // Every rank would time its own steps and could fit a different count.
    ddpm::require(!budget, "--time-limit: not under mpirun (ranks could fit different step counts); give --steps");
    const ddpm::distributed::Environment mpi;
    ddpm::distributed::DataParallel<float, UNet> dp(trainer, ddpm::distributed::Communicator::world());
    if (dp.is_root())
      std::fprintf(stderr, "data parallel over %d MPI ranks (global batch %lld)\n", dp.world_size(),
                   static_cast<long long>(o.batch));
    return run_training(dp, data, o, nullptr, [](std::int64_t) {});
  }
#endif
  return run_training(trainer, data, o, budget ? &*budget : nullptr,
                      [&](std::int64_t total) { trainer.set_lr_schedule(schedule_for(total)); });
}

inline int train(const TrainOptions& o) {
  train_steps(o);
  return 0;
}

}  // namespace mnist
