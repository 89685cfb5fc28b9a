// ddpm_dp_bench: throughput of data-parallel training over MPI, and the
// allreduce cost that drives its scaling.
//
//   mpirun -np 2 ddpm_dp_bench --threads 1      # 2 ranks x 1 thread
//   mpirun -np 1 ddpm_dp_bench --threads 2      # 1 rank  x 2 threads
//
// The model is mnist_diffusion's class-conditional U-Net (28x28, widths
// w, 2w, 4w, attention at the lowest resolution) on random digits-shaped
// data: the step costs what a real MNIST step costs. Every run trains the
// same global batch, so images/s compare directly. Then, on more than one
// rank, it times MPI_Allreduce for a range of sizes up to the gradient
// buffer and fits t(bytes) = latency + bytes / bandwidth.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/distributed/data_parallel.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "../mnist/mnist_data.hpp"  // mnist::unet_config: the example's U-Net

namespace {

using UNet = ddpm::nn::UNet2D<float, ddpm::backend::Cpu>;
namespace dist = ddpm::distributed;

struct Options {
  int threads = 0;  // 0: the machine's cores / ranks on this machine
  ddpm::index_t batch = 32;  // global
  int steps = 10;
  int warmup = 2;
  int width = 16;
  double bucket_mb = 0;
  bool allreduce = true;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      ddpm::require(i + 1 < argc, a, " needs a value");
      return argv[++i];
    };
    if (a == "--threads") o.threads = std::atoi(next());
    else if (a == "--batch") o.batch = std::atol(next());
    else if (a == "--steps") o.steps = std::atoi(next());
    else if (a == "--warmup") o.warmup = std::atoi(next());
    else if (a == "--width") o.width = std::atoi(next());
    else if (a == "--bucket-mb") o.bucket_mb = std::atof(next());
    else if (a == "--no-allreduce") o.allreduce = false;
    else {
      std::fprintf(stderr,
                   "usage: %s [--threads T] [--batch GLOBAL] [--steps N] [--warmup N] [--width W] "
                   "[--bucket-mb MB] [--no-allreduce]\n",
                   argv[0]);
      std::exit(a == "-h" || a == "--help" ? 0 : 2);
    }
  }
  return o;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median time of an in-place MPI_Allreduce(SUM) of `n` floats.
double time_allreduce(const dist::Communicator& comm, std::size_t n, int reps) {
  std::vector<float> buf(std::max<std::size_t>(n, 1), 1.0f);
  std::vector<double> t;
  for (int r = 0; r < reps + 2; ++r) {
    comm.barrier();
    const double t0 = MPI_Wtime();
    comm.allreduce_sum(std::span<float>(buf.data(), n));
    const double dt = comm.max(MPI_Wtime() - t0);
    if (r >= 2) t.push_back(dt);
  }
  return median(t);
}

// The same, reduced in buckets of `bucket` floats, all in flight at once
// (what DataParallelConfig::bucket_bytes does).
double time_bucketed(const dist::Communicator& comm, std::size_t n, std::size_t bucket, int reps) {
  std::vector<float> buf(n, 1.0f);
  std::vector<MPI_Request> req;
  std::vector<double> t;
  for (int r = 0; r < reps + 2; ++r) {
    comm.barrier();
    const double t0 = MPI_Wtime();
    req.clear();
    for (std::size_t off = 0; off < n; off += bucket)
      req.push_back(comm.iallreduce(std::span<float>(buf.data() + off, std::min(bucket, n - off)), MPI_SUM));
    dist::check_mpi(MPI_Waitall(static_cast<int>(req.size()), req.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    const double dt = comm.max(MPI_Wtime() - t0);
    if (r >= 2) t.push_back(dt);
  }
  return median(t);
}

}  // namespace

int main(int argc, char** argv) {
  dist::Environment env(argc, argv);
  try {
    const Options o = parse(argc, argv);
    auto comm = dist::Communicator::world();
    const int ranks = comm.size();
    const int local = comm.local_size();
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const int threads = o.threads > 0 ? o.threads : std::max(1, cores / local);
    ddpm::backend::Cpu::set_num_threads(threads);

    UNet unet(mnist::unet_config(o.width));
    ddpm::Rng init(0, 0xC0FFEE);
    unet.init(init);
    unet.set_mode(ddpm::nn::Mode::Training);
    const ddpm::NoiseSchedule<float> schedule(ddpm::ScheduleConfig{});
    ddpm::train::TrainConfig tc;
    tc.lr = {.base_lr = 1e-3, .warmup_steps = 10, .total_steps = 1000, .min_lr = 1e-4};
    tc.label_dropout = 0.1;
    tc.null_label = 10;
    ddpm::train::Trainer<float, UNet> trainer(unet, schedule, tc);
    dist::DataParallelConfig dc;
    dc.bucket_bytes = static_cast<std::size_t>(o.bucket_mb * 1e6);
    dist::DataParallel dp(trainer, comm, dc);

    // Random digits-shaped data in [-1, 1], the same on every rank.
    ddpm::Tensor<float> x0({o.batch, 1, 28, 28});
    std::vector<std::int64_t> labels(static_cast<std::size_t>(o.batch));
    ddpm::Rng rng(7);
    for (auto& v : x0) v = static_cast<float>(2 * rng.uniform() - 1);
    for (auto& l : labels) l = static_cast<std::int64_t>(rng.uniform_int(10));

    if (comm.is_root())
      std::printf("ranks %d (%d on this machine) x threads %d, global batch %lld (%lld per rank), U-Net width %d: "
                  "%lld parameters, %.2f MB of gradients per step\n",
                  ranks, local, threads, static_cast<long long>(o.batch), static_cast<long long>(o.batch / ranks),
                  o.width, static_cast<long long>(unet.num_parameters()), static_cast<double>(dp.gradient_bytes()) / 1e6);
    for (int s = 0; s < o.warmup; ++s) dp.step(x0.cview(), {labels, {}});
    dist::StepTimings sum{};
    comm.barrier();
    const double t0 = MPI_Wtime();
    for (int s = 0; s < o.steps; ++s) {
      dp.step(x0.cview(), {labels, {}});
      const auto& t = dp.last_timings();
      sum.compute += t.compute, sum.wait += t.wait, sum.allreduce += t.allreduce, sum.update += t.update;
    }
    comm.barrier();
    const double secs = MPI_Wtime() - t0;
    const double per_step = secs / o.steps;
    const double compute = comm.max(sum.compute) / o.steps, wait = comm.max(sum.wait) / o.steps,
                 reduce = comm.max(sum.allreduce) / o.steps, update = comm.max(sum.update) / o.steps;
    if (comm.is_root())
      std::printf("  %.1f images/s  (%.3f s/step; max over ranks: compute %.3f, waiting for the slowest rank %.4f, "
                  "gradient allreduce %.4f, update %.4f)\n",
                  static_cast<double>(o.batch) / per_step, per_step, compute, wait, reduce, update);

    if (o.allreduce && ranks > 1) {
      const std::size_t grad_floats = dp.gradient_bytes() / sizeof(float);
      std::vector<std::size_t> sizes = {1, 256, 16384, 262144, 1u << 20, grad_floats};
      std::vector<double> times;
      for (auto n : sizes) times.push_back(time_allreduce(comm, n, n > 100000 ? 10 : 50));
      const std::size_t bucket_mb[2] = {1, 4};
      double bucketed[2];
      for (std::size_t i = 0; i < 2; ++i) bucketed[i] = time_bucketed(comm, grad_floats, bucket_mb[i] * 250000, 10);
      if (comm.is_root()) {
        std::printf("  MPI_Allreduce(SUM, float) on %d ranks, median:\n", ranks);
        for (std::size_t i = 0; i < sizes.size(); ++i)
          std::printf("    %10.3f KB  %9.1f us  %7.2f GB/s algorithmic\n", static_cast<double>(sizes[i]) * 4 / 1e3,
                      times[i] * 1e6, static_cast<double>(sizes[i]) * 4 / times[i] / 1e9);
        // latency ~ the smallest message; bandwidth from the gradient buffer.
        const double lat = times[0];
        const double bw = static_cast<double>(grad_floats) * 4 / std::max(times.back() - lat, 1e-9);
        for (std::size_t i = 0; i < 2; ++i)
          std::printf("    the gradient buffer in %zu MB buckets (MPI_Iallreduce): %9.1f us\n", bucket_mb[i],
                      bucketed[i] * 1e6);
        std::printf("  fit: latency %.1f us, bandwidth %.2f GB/s (bytes / (t - latency)) for the %.2f MB buffer\n",
                    lat * 1e6, bw / 1e9, static_cast<double>(grad_floats) * 4 / 1e6);
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    dist::Environment::abort(1);
  }
}
