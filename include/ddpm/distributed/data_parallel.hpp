#pragma once
// Data-parallel training over MPI (the scheme of PyTorch DDP and Horovod):
// every rank holds a full replica of the model, optimizer and EMA; each step
// every rank computes the gradients of its own shard of the global batch,
// the gradients are averaged with an allreduce over the flat gradient
// buffer, and every rank applies the same update, so the replicas stay
// identical without ever sending weights again.
//
//   ddpm::distributed::Environment env(argc, argv);
//   auto comm = ddpm::distributed::Communicator::world();
//   Model model(...);                                   // any Denoiser (or an autoencoder,
//   train::Trainer<float, Model> trainer(model, schedule, config);  // with its objective)
//   ddpm::distributed::DataParallel dp(trainer, comm);  // broadcasts rank 0's weights
//   if (resuming) dp.resume(path);                      // rank 0 reads, all ranks load
//   for (...) {
//     auto stats = dp.step(global_x0, {labels});        // or dp.step_local(shard, ..., offset)
//     if (dp.rank() == 0) log(stats.loss);              // the global mean loss
//     if (time_to_save) dp.save(path);                  // rank 0 writes
//   }
//
// What each part does, and why:
//
// * Construction broadcasts rank 0's parameters, Adam moments and EMA
//   weights, so ranks may initialise their models from different seeds.
// * Data and noise: each rank trains on its shard [rank * B, (rank+1) * B)
//   of every global batch of W * B samples (its class labels, conditioning
//   vector and condition image sliced alike). The Trainer draws t, eps,
//   label and condition dropout, and a model's dropout masks, per *global*
//   sample index (Philox stream (seed, step << 32 | index)), so each rank
//   has its own noise, derived from the seed and its
//   position in the batch, and W ranks at batch B give the same result as one
//   process at batch W * B, up to the rounding of the reduction. That also
//   makes a run independent of the number of ranks for a fixed global batch.
// * Gradients: one in-place MPI_Allreduce(SUM) over the flat gradient buffer
//   (ddpm::Parameters keeps all gradients contiguous), then a scale by 1/W. With
//   DataParallelConfig::bucket_bytes > 0 the buffer is reduced in buckets,
//   all started at once with MPI_Iallreduce and scaled as each finishes.
// * The loss reported is the mean over all ranks (= the global batch mean).
// * Checkpoints: rank 0 writes (atomically, as Trainer::save does), after
//   checking that every replica is bit-identical; no rank returns from save()
//   before the file is complete. A checkpoint holds no rank-specific state
//   (weights, Adam moments, EMA, the step and the seed), so it resumes on any
//   number of ranks; keep the global batch the same to continue the same run.
// * Resume: rank 0 reads the file and broadcasts its bytes; every rank loads
//   those same bytes. Only rank 0 needs to see the file (no shared file
//   system needed, one read instead of W), and since every rank validates the
//   same bytes they all succeed or all fail together.
// * Errors are collective: when a step, save or resume fails on any rank
//   (bad input, a non-finite loss, a full disk), every rank throws the same
//   ddpm::Error naming the first failing rank, instead of the others waiting
//   forever in the next collective. Weights are then untouched everywhere.
//
// Overlap: PyTorch DDP hides most of the allreduce behind the backward pass:
// autograd hooks mark each parameter's gradient final as backward reaches
// it (last layer first), and a bucket (25 MB by default) is reduced as soon
// as all its gradients are final. Here the model's backward() is one call
// that returns when every gradient is done (the Denoiser contract has no
// per-layer hook), so the reduction starts after backward: a step costs
// compute + allreduce rather than about max(compute, allreduce). The saving
// overlap would bring is at most min(allreduce, backward) per step; it
// matters once the allreduce is a sizeable part of the step (slow networks,
// many machines; see the README's scaling notes), and would need a hook in
// the Denoiser contract (layers reporting "my gradients are final" in
// backward order). What bucketing gives without hooks: several reductions in
// flight at once and the 1/W scaling of finished buckets while the others
// travel; measured, it does not beat one large MPI_Allreduce on shared
// memory, so the default is one allreduce (bucket_bytes = 0).
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/model.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/distributed/mpi.hpp"
#include "ddpm/io/checkpoint.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/train/trainer.hpp"
#include "ddpm/train/training_loop.hpp"

namespace ddpm::distributed {

struct DataParallelConfig {
  // 0: average the gradients with one MPI_Allreduce over the whole flat
  // buffer. > 0: in buckets of about this many bytes (MPI_Iallreduce, all in
  // flight at once); PyTorch DDP uses 25 MB.
  std::size_t bucket_bytes = 0;
  // Check that every replica is bit-identical before writing a checkpoint.
  bool verify_on_save = true;
};

// The part of a global batch a rank trains on.
struct Shard {
  index_t offset = 0;  // global index of the rank's first sample
  index_t size = 0;    // samples on this rank
};

// Where the last step's time went (seconds, this rank).
struct StepTimings {
  double compute = 0;    // forward + loss + backward on the local shard
  double wait = 0;       // the small status allreduce: mostly waiting for the slowest rank
  double allreduce = 0;  // the gradient reduction and 1/W scaling
  double update = 0;     // clip, Adam, EMA
};

namespace detail {

// A fast 64-bit hash of raw bytes (for comparing replicas, not for security).
inline std::uint64_t hash_bytes(const void* data, std::size_t n, std::uint64_t h = 0x9E3779B97F4A7C15ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  auto mix = [](std::uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
  };
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ mix(w)) * 0x100000001b3ull;
  }
  for (; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return mix(h ^ n);
}

template <class T>
std::uint64_t hash_span(std::span<const T> s) {
  return hash_bytes(s.data(), s.size_bytes());
}

inline std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace detail

// A train::TrainingLoop, like the Trainer it wraps: a training program
// written for one process runs data-parallel unchanged. Any objective whose
// loss is a mean over the batch (train/objective.hpp) trains data-parallel.
template <Scalar T, class Model, class Obj = typename train::default_objective<Model, T>::type>
class DataParallel {
 public:
  using Trainer = train::Trainer<T, Model, Obj>;
  using scalar_type = T;
  using model_type = Model;

  // Collective. Broadcasts rank 0's parameters, Adam moments and EMA weights
  // to every rank; the trainers must all be at the same step.
  DataParallel(train::Trainer<T, Model, Obj>& trainer, const Communicator& comm, DataParallelConfig config = {})
      : trainer_(trainer), comm_(comm.duplicate()), config_(config) {
    const auto step = trainer_.steps_done();
    const auto lo = comm_.min<std::int64_t>(step), hi = comm_.max<std::int64_t>(step);
    require(lo == hi, "DataParallel: the trainers are at different steps (from ", lo, " to ", hi,
            " across ranks); resume through DataParallel::resume so every rank loads the same checkpoint");
    const auto n = static_cast<std::int64_t>(params().numel());
    require(comm_.min(n) == comm_.max(n), "DataParallel: the models differ in size across ranks (this rank has ",
            n, " parameters)");
    const std::int32_t ema = trainer_.ema() ? 1 : 0;
    require(comm_.min(ema) == comm_.max(ema), "DataParallel: EMA is on for some ranks and off for others");
    broadcast_state(0);
  }
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int rank() const { return comm_.rank(); }
  int world_size() const { return comm_.size(); }
  bool is_root() const { return comm_.rank() == 0; }
  const Communicator& communicator() const { return comm_; }
  Trainer& trainer() { return trainer_; }
  // The TrainingLoop interface beside step, save and resume (identical on every rank).
  std::int64_t steps_done() const { return trainer_.steps_done(); }
  train::EMA<T, train::backend_of_t<Model>>* ema() { return trainer_.ema(); }
  Model& model() { return trainer_.model(); }
  const DataParallelConfig& config() const { return config_; }
  // Bytes reduced per step (the flat gradient buffer).
  std::size_t gradient_bytes() const { return params().grads().size_bytes(); }
  const StepTimings& last_timings() const { return timings_; }

  // This rank's part of a global batch of `global_batch` samples (local).
  Shard shard(index_t global_batch) const {
    const index_t w = world_size();
    require(global_batch > 0 && global_batch % w == 0, "DataParallel: the global batch of ", global_batch,
            " samples is not divisible by the ", w, " ranks (use a multiple of ", w, ", e.g. ",
            std::max<index_t>(w, global_batch / w * w), " or ", (global_batch / w + 1) * w, ")");
    const index_t b = global_batch / w;
    return {rank() * b, b};
  }

  // Collective. Every rank passes the same global batch x0 [W*B, ...] (and
  // its conditioning); each trains on its own shard.
  train::StepStats step(ConstTensorView<T> x0, Conditioning<T> cond = {}) {
    return run_step([&] {
      require(x0.rank() >= 2, "DataParallel::step: x0 must be a batch [N, ...], got ", x0.shape().str());
      const index_t n = x0.dim(0);
      const Shard s = shard(n);
      Conditioning<T> local;
      if (!cond.class_labels.empty()) {
        require(static_cast<index_t>(cond.class_labels.size()) == n, "DataParallel::step: ",
                cond.class_labels.size(), " class labels for a global batch of ", n);
        local.class_labels = cond.class_labels.subspan(static_cast<std::size_t>(s.offset),
                                                       static_cast<std::size_t>(s.size));
      }
      if (cond.vector.data() != nullptr) {
        require(cond.vector.rank() >= 1 && cond.vector.dim(0) == n, "DataParallel::step: conditioning vector ",
                cond.vector.shape().str(), " for a global batch of ", n);
        local.vector = cond.vector.slice(s.offset, s.size);
      }
      if (cond.image.data() != nullptr) {
        require(cond.image.rank() >= 1 && cond.image.dim(0) == n, "DataParallel::step: condition image ",
                cond.image.shape().str(), " for a global batch of ", n);
        local.image = cond.image.slice(s.offset, s.size);
      }
      return std::pair{trainer_.compute_gradients(x0.slice(s.offset, s.size), local, s.offset), s.size};
    });
  }

  // Collective. Each rank passes only its own shard (e.g. it loaded only
  // those samples), whose first sample has global index `global_offset`
  // (shard(global_batch).offset). Every rank's shard must have the same size.
  train::StepStats step_local(ConstTensorView<T> x0_local, Conditioning<T> cond_local, index_t global_offset) {
    return run_step([&] {
      require(x0_local.rank() >= 2, "DataParallel::step_local: x0 must be a batch [N, ...], got ",
              x0_local.shape().str());
      return std::pair{trainer_.compute_gradients(x0_local, cond_local, global_offset), x0_local.dim(0)};
    });
  }

  // Collective. Rank 0 writes the checkpoint (`path` on the other ranks is
  // ignored); every rank returns once the file is complete, or throws.
  void save(const std::filesystem::path& path, const train::CheckpointMetadata& metadata = {}) {
    if (config_.verify_on_save) verify_replicas();
    std::exception_ptr err;
    if (is_root()) {
      try {
        auto meta = metadata;
        meta.emplace("ddpm.data_parallel.world_size", std::to_string(world_size()));
        trainer_.save(path, meta);
      } catch (...) {
        err = std::current_exception();
      }
    }
    agree(err, "saving a checkpoint");  // also the barrier: nobody returns before rank 0 has written
  }

  // Collective. Rank 0 reads the checkpoint (`path` on the other ranks is
  // ignored) and broadcasts it; every rank restores weights, Adam, EMA and
  // the step from those bytes. Works for any number of ranks.
  void resume(const std::filesystem::path& path) {
    std::vector<char> bytes;
    std::exception_ptr err;
    if (is_root()) {
      try {
        bytes = io::read_file(path);
      } catch (...) {
        err = std::current_exception();
      }
    }
    agree(err, "reading the checkpoint");
    const auto n = comm_.broadcast_value<std::int64_t>(static_cast<std::int64_t>(bytes.size()));
    bytes.resize(static_cast<std::size_t>(n));
    comm_.broadcast(std::span<char>(bytes));
    try {
      if (is_root()) {
        trainer_.resume(path);
      } else {
        // Trainer::resume takes a path: load the broadcast bytes from a
        // private temporary copy (rank-local disk), removed right after.
        namespace fs = std::filesystem;
        std::random_device rd;
        const fs::path tmp = fs::temp_directory_path() / ("ddpm-resume-rank" + std::to_string(rank()) + "-" +
                                                          std::to_string(rd()) + ".safetensors");
        try {
          io::write_file_atomically(tmp, [&](std::ostream& out) { io::write_bytes(out, bytes.data(), bytes.size()); });
          trainer_.resume(tmp);
        } catch (...) {
          std::error_code ec;
          fs::remove(tmp, ec);
          throw;
        }
        std::error_code ec;
        fs::remove(tmp, ec);
      }
    } catch (...) {
      err = std::current_exception();
    }
    agree(err, "resuming from the checkpoint");
    verify_replicas();
  }

  // Collective. Copies rank `root`'s parameters, Adam moments and EMA to
  // every rank (the step counter must already agree).
  void broadcast_state(int root = 0) {
    auto& p = params();
    comm_.broadcast(p.values(), root);
    auto& adam = trainer_.optimizer();
    comm_.broadcast(adam.exp_avg(), root);
    comm_.broadcast(adam.exp_avg_sq(), root);
    adam.set_step_count(comm_.broadcast_value<std::int64_t>(adam.step_count(), root));
    if (auto* ema = trainer_.ema()) {
      comm_.broadcast(ema->weights(), root);
      ema->set_updates(comm_.broadcast_value<std::int64_t>(ema->updates(), root));
    }
  }

  // Collective. Throws (on every rank) unless every rank holds bit-identical
  // parameters, Adam state, EMA and step.
  void verify_replicas() const {
    auto& p = params();
    auto& adam = trainer_.optimizer();
    const auto* ema = trainer_.ema();
    const std::int64_t counters[3] = {trainer_.steps_done(), adam.step_count(), ema ? ema->updates() : 0};
    const std::pair<const char*, std::uint64_t> parts[] = {
        {"parameters", detail::hash_span<T>(p.values())},
        {"Adam first moments", detail::hash_span<T>(adam.exp_avg())},
        {"Adam second moments", detail::hash_span<T>(adam.exp_avg_sq())},
        {"EMA weights", ema ? detail::hash_span<T>(ema->weights()) : 0},
        {"step counters", detail::hash_bytes(counters, sizeof counters)},
    };
    std::string problems;
    for (const auto& [name, h] : parts) {
      const auto all = comm_.allgather_value<std::uint64_t>(h);
      std::string ranks;
      for (std::size_t r = 1; r < all.size(); ++r)
        if (all[r] != all[0]) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
      if (!ranks.empty()) problems += std::string("\n  ") + name + " on rank(s) " + ranks + " differ from rank 0";
    }
    require(problems.empty(), "DataParallel: the replicas have diverged at step ", trainer_.steps_done(), ":",
            problems);
  }

 private:
  Parameters<T>& params() const { return trainer_.model().parameters(); }

  // Collective: if any rank holds an error, every rank throws the same
  // ddpm::Error naming the first failing rank and its message.
  void agree(const std::exception_ptr& err, const char* what) const {
    const int first = comm_.min<std::int32_t>(err ? rank() : world_size());
    if (first == world_size()) return;
    const std::string msg = comm_.broadcast_string(rank() == first ? detail::what_of(err) : std::string(), first);
    fail("DataParallel: ", what, " failed on rank ", first, " of ", world_size(), ": ", msg);
  }

  template <class LocalWork>
  train::StepStats run_step(LocalWork&& work) {
    double t0 = MPI_Wtime();
    std::exception_ptr err;
    double loss = 0;
    index_t n = 0;
    try {
      std::tie(loss, n) = work();
    } catch (...) {
      err = std::current_exception();
    }
    const double t1 = MPI_Wtime();
    // One small allreduce carries the loss, the failure count and the local
    // batch sizes: sizes are all equal iff W * sum(n^2) == (sum n)^2.
    const auto dn = static_cast<double>(n);
    double status[4] = {err ? 0.0 : loss, err ? 1.0 : 0.0, dn, dn * dn};
    comm_.allreduce_sum(std::span<double>(status));
    if (status[1] > 0) agree(err, "a training step");
    const double w = world_size();
    if (w * status[3] != status[2] * status[2]) {
      const auto sizes = comm_.allgather_value<std::int64_t>(static_cast<std::int64_t>(n));
      std::string list;
      for (auto s : sizes) list += (list.empty() ? "" : ", ") + std::to_string(s);
      fail("DataParallel: every rank must train on a shard of the same size, got local batches of ", list,
           " samples (ranks 0..", world_size() - 1, ")");
    }
    const double t2 = MPI_Wtime();
    average_gradients();
    const double t3 = MPI_Wtime();
    // The gradients and the loss are now the same on every rank, so
    // apply_update succeeds, or throws (non-finite), on all of them alike.
    const auto stats = trainer_.apply_update(status[0] / w);
    timings_ = {t1 - t0, t2 - t1, t3 - t2, MPI_Wtime() - t3};
    return stats;
  }

  // grads <- (sum over ranks of grads) / W, in place.
  void average_gradients() {
    if (world_size() == 1) return;
    const std::span<T> g = params().grads();
    const T scale = T(1) / static_cast<T>(world_size());
    const std::size_t per_bucket = std::max<std::size_t>(1, config_.bucket_bytes / sizeof(T));
    if (config_.bucket_bytes == 0 || g.size() <= per_bucket) {
      comm_.allreduce_sum(g);
      for (auto& v : g) v *= scale;
      return;
    }
    const std::size_t buckets = (g.size() + per_bucket - 1) / per_bucket;
    requests_.assign(buckets, MPI_REQUEST_NULL);
    for (std::size_t b = 0; b < buckets; ++b) {
      const std::size_t off = b * per_bucket;
      requests_[b] = comm_.iallreduce(g.subspan(off, std::min(per_bucket, g.size() - off)), MPI_SUM);
    }
    for (std::size_t done = 0; done < buckets; ++done) {
      int b = MPI_UNDEFINED;
      check_mpi(MPI_Waitany(static_cast<int>(buckets), requests_.data(), &b, MPI_STATUS_IGNORE), "MPI_Waitany");
      require(b != MPI_UNDEFINED, "DataParallel: MPI_Waitany returned no request");
      const std::size_t off = static_cast<std::size_t>(b) * per_bucket;
      for (auto& v : g.subspan(off, std::min(per_bucket, g.size() - off))) v *= scale;
    }
  }

  Trainer& trainer_;
  Communicator comm_;
  DataParallelConfig config_;
  StepTimings timings_;
  std::vector<MPI_Request> requests_;
};

}  // namespace ddpm::distributed
