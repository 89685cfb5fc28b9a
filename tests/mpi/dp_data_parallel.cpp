// Data-parallel training over MPI (run under mpirun -np 2, any number works):
// W ranks at batch B give one process's weights at batch W * B; the replicas
// stay identical; rank 0 alone writes checkpoints, which resume on any
// number of ranks; errors reach every rank.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/distributed/data_parallel.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "ddpm/train/ema.hpp"
#include "ddpm/train/trainer.hpp"
#include "ddpm/train/training_loop.hpp"
#include "support/tiny_unet.hpp"
#include "support/toy_denoiser.hpp"

#ifndef DDPM_TEST_TMP_DIR
#define DDPM_TEST_TMP_DIR "/tmp"
#endif

using namespace ddpm;
namespace fs = std::filesystem;
namespace dist = ddpm::distributed;

namespace {

using test::Toy;

ScheduleConfig schedule_config(index_t steps) {
  ScheduleConfig c;
  c.num_train_timesteps = steps;
  return c;
}

constexpr index_t kDim = 5, kClasses = 4;  // class 3 is the "no label" class

template <Scalar T>
using DP = dist::DataParallel<T, Toy<T>>;
template <Scalar T>
using TrainerT = train::Trainer<T, Toy<T>>;
static_assert(train::TrainingLoop<TrainerT<float>> && train::TrainingLoop<DP<float>>);

train::TrainConfig config(std::uint64_t seed = 11) {
  train::TrainConfig c;
  c.lr = {.base_lr = 2e-2, .warmup_steps = 3, .total_steps = 200, .min_lr = 1e-3};
  c.seed = seed;
  c.ema_decay = 0.95;
  c.label_dropout = 0.25;
  c.null_label = kClasses - 1;
  c.min_snr_gamma = 5;
  c.prediction_type = PredictionType::v_prediction;
  c.grad_clip_norm = 0.5;
  return c;
}

// `steps` global batches of `global` samples each: data, labels, vector conditioning.
template <Scalar T>
struct Batches {
  Tensor<T> x, v;
  std::vector<std::int64_t> labels;
  index_t global;
  Batches(index_t steps, index_t global_batch) : x({steps * global_batch, kDim}), v({steps * global_batch, kDim}),
                                                 global(global_batch) {
    Rng rng(5);
    for (index_t i = 0; i < x.numel(); ++i) {
      x[i] = static_cast<T>(0.5 * std::sin(0.37 * static_cast<double>(i)) + 0.1 * rng.normal());
      v[i] = static_cast<T>(0.05 * rng.normal());
    }
    for (index_t i = 0; i < steps * global_batch; ++i) labels.push_back(static_cast<std::int64_t>(i % (kClasses - 1)));
  }
  ConstTensorView<T> x0(index_t s) const { return x.cview().slice(s * global, global); }
  Conditioning<T> cond(index_t s) const {
    return {std::span<const std::int64_t>(labels).subspan(static_cast<std::size_t>(s * global),
                                                          static_cast<std::size_t>(global)),
            v.cview().slice(s * global, global)};
  }
};

template <class A, class B>
double max_rel_diff(const A& a, const B& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
    m = std::max(m, std::abs(x - y) / std::max(1e-3, std::abs(y)));
  }
  return m;
}

template <class A, class B>
bool bit_equal(const A& a, const B& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

template <class T>
std::vector<T> to_vector(std::span<const T> s) {
  return {s.begin(), s.end()};
}
template <class T>
std::vector<T> to_vector(std::span<T> s) {
  return {s.begin(), s.end()};
}

// W ranks at batch B against one process (MPI_COMM_SELF, on every rank) at batch W * B.
template <Scalar T>
void check_equivalence(double tolerance) {
  const auto world = dist::Communicator::world();
  const index_t W = world.size(), B = 3, steps = 30;
  const Batches<T> data(steps, W * B);
  const NoiseSchedule<T> schedule(schedule_config(100));

  Toy<T> m(kDim, kClasses, 1 + static_cast<std::uint64_t>(world.rank()));  // rank 0's weights are broadcast
  TrainerT<T> t(m, schedule, config());
  DP<T> dp(t, world);

  Toy<T> ref(kDim, kClasses, 1);
  TrainerT<T> tref(ref, schedule, config());
  const auto self = dist::Communicator::self();
  DP<T> dref(tref, self);

  double worst_loss = 0;
  for (index_t s = 0; s < steps; ++s) {
    const auto a = dp.step(data.x0(s), data.cond(s));
    const auto b = dref.step(data.x0(s), data.cond(s));
    CHECK(a.step == b.step);
    worst_loss = std::max(worst_loss, std::abs(a.loss - b.loss) / b.loss);
    CHECK(a.grad_norm == Approx(b.grad_norm).epsilon(tolerance));
  }
  const double dw = max_rel_diff(m.parameters().values(), ref.parameters().values());
  const double de = max_rel_diff(t.ema()->weights(), tref.ema()->weights());
  const double dm = max_rel_diff(t.optimizer().exp_avg(), tref.optimizer().exp_avg());
  if (world.rank() == 0)
    WARN(W << " ranks x batch " << B << " vs 1 x " << W * B << " after " << steps << " steps (" << sizeof(T) * 8
           << "-bit): max relative difference weights " << dw << ", EMA " << de << ", Adam m " << dm << ", loss "
           << worst_loss);
  CHECK(dw < tolerance);
  CHECK(de < tolerance);
  CHECK(worst_loss < tolerance);
  // Every rank holds the same replica, bit for bit.
  CHECK_NOTHROW(dp.verify_replicas());
}

}  // namespace

TEST_CASE("the communicator wraps MPI with checked calls", "[mpi]") {
  auto world = dist::Communicator::world();
  CHECK(world.size() >= 1);
  CHECK(world.rank() < world.size());
  CHECK(world.sum(1) == world.size());
  CHECK(world.max(world.rank()) == world.size() - 1);
  std::vector<double> v(1000, world.rank() + 1.0);
  world.allreduce_sum(std::span<double>(v));
  CHECK(v[999] == world.size() * (world.size() + 1) / 2.0);
  CHECK(world.broadcast_string(world.rank() == 0 ? "from rank 0" : "") == "from rank 0");
  CHECK(world.local_size() >= 1);
  // A bad argument is an ddpm::Error naming the call, not an abort.
  CHECK_THROWS_WITH(world.broadcast_value(1, world.size() + 5), Catch::Contains("MPI_Bcast"));
}

TEST_CASE("construction broadcasts rank 0's weights, EMA and Adam state", "[mpi][data-parallel]") {
  const auto world = dist::Communicator::world();
  const NoiseSchedule<double> schedule(schedule_config(50));
  Toy<double> m(kDim, kClasses, 40 + static_cast<std::uint64_t>(world.rank()));
  TrainerT<double> t(m, schedule, config());
  DP<double> dp(t, world);
  Toy<double> ref(kDim, kClasses, 40);
  CHECK(bit_equal(m.parameters().values(), ref.parameters().values()));
  CHECK(bit_equal(t.ema()->weights(), ref.parameters().values()));
  CHECK_NOTHROW(dp.verify_replicas());
  CHECK(dp.gradient_bytes() == static_cast<std::size_t>(m.parameters().numel()) * sizeof(double));
}

TEST_CASE("W ranks at batch B equal one process at batch W*B (double: tight)", "[mpi][data-parallel]") {
  check_equivalence<double>(1e-10);
}

TEST_CASE("W ranks at batch B equal one process at batch W*B (float)", "[mpi][data-parallel]") {
  check_equivalence<float>(5e-4);
}

TEST_CASE("W ranks at batch B equal one process at batch W*B with dropout and a condition image",
          "[mpi][data-parallel][dropout][condition]") {
  // A tiny U-Net with dropout in its ResNet blocks, trained on a 1-channel
  // x0 with a 1-channel condition image (in_channels 2) and condition
  // dropout: masks and drops are drawn per global sample, so the shards
  // reproduce the combined batch.
  using U = nn::UNet2D<double, backend::Reference>;
  const auto world = dist::Communicator::world();
  const index_t W = world.size(), B = 2, steps = 4, G = W * B;
  const nn::UNet2DConfig uc = test::tiny_unet_config(1, 1, 0.3);
  const auto make = [&](std::uint64_t seed) {
    U m(uc);
    Rng rng(seed);
    m.init(rng);
    return m;
  };
  Tensor<double> x({steps * G, 1, 4, 4}), img({steps * G, 1, 4, 4});
  Rng rng(31);
  rng.fill_normal(x.span());
  for (index_t i = 0; i < x.numel(); ++i) img[i] = 0.5 * x[i] + 0.1 * rng.normal();
  auto tc = config();
  tc.condition_dropout = 0.3;
  tc.label_dropout = 0;
  const NoiseSchedule<double> schedule(schedule_config(100));
  U m = make(1 + static_cast<std::uint64_t>(world.rank()));  // rank 0's weights are broadcast
  train::Trainer<double, U> t(m, schedule, tc);
  dist::DataParallel<double, U> dp(t, world);
  U ref = make(1);
  train::Trainer<double, U> tref(ref, schedule, tc);
  dist::DataParallel<double, U> dref(tref, dist::Communicator::self());
  U nodrop = [&] {  // the same run without dropout: must differ
    auto c = uc;
    c.dropout = 0;
    U n(c);
    Rng r(1);
    n.init(r);
    return n;
  }();
  train::Trainer<double, U> tnd(nodrop, schedule, tc);
  for (index_t s = 0; s < steps; ++s) {
    Conditioning<double> cond;
    cond.image = img.cview().slice(s * G, G);
    const auto a = dp.step(x.cview().slice(s * G, G), cond);
    const auto b = dref.step(x.cview().slice(s * G, G), cond);
    tnd.step(x.cview().slice(s * G, G), cond);
    CHECK(a.loss == Approx(b.loss).epsilon(1e-12));
    CHECK(a.grad_norm == Approx(b.grad_norm).epsilon(1e-10));
  }
  const double dw = max_rel_diff(m.parameters().values(), ref.parameters().values());
  if (world.rank() == 0)
    WARN(W << " ranks x batch " << B << " vs 1 x " << G << ", U-Net with dropout 0.3 and a condition image, "
           << steps << " steps: max relative weight difference " << dw);
  CHECK(dw < 1e-10);
  CHECK(max_rel_diff(nodrop.parameters().values(), ref.parameters().values()) > 1e-6);
  CHECK_NOTHROW(dp.verify_replicas());
}

TEST_CASE("step_local on each rank's shard and bucketed reduction give the same bits", "[mpi][data-parallel]") {
  const auto world = dist::Communicator::world();
  const index_t W = world.size(), B = 2, steps = 8;
  const Batches<float> data(steps, W * B);
  const NoiseSchedule<float> schedule(schedule_config(100));
  Toy<float> a(kDim, kClasses, 1), b(kDim, kClasses, 1), c(kDim, kClasses, 1);
  TrainerT<float> ta(a, schedule, config()), tb(b, schedule, config()), tc(c, schedule, config());
  dist::DataParallelConfig buckets;
  buckets.bucket_bytes = 16;  // 16 bytes: many buckets
  DP<float> da(ta, world), db(tb, world), dc(tc, world, buckets);
  for (index_t s = 0; s < steps; ++s) {
    const auto la = da.step(data.x0(s), data.cond(s));
    // Each rank passes only its own shard.
    const auto sh = db.shard(W * B);
    const auto cond = data.cond(s);
    const auto lb = db.step_local(data.x0(s).slice(sh.offset, sh.size),
                                  {cond.class_labels.subspan(static_cast<std::size_t>(sh.offset),
                                                             static_cast<std::size_t>(sh.size)),
                                   cond.vector.slice(sh.offset, sh.size)},
                                  sh.offset);
    const auto lc = dc.step(data.x0(s), data.cond(s));
    CHECK(la.loss == lb.loss);
    CHECK(la.loss == lc.loss);
  }
  CHECK(bit_equal(a.parameters().values(), b.parameters().values()));
  CHECK(bit_equal(a.parameters().values(), c.parameters().values()));
  CHECK(bit_equal(ta.ema()->weights(), tc.ema()->weights()));
  CHECK_NOTHROW(dc.verify_replicas());
}

TEST_CASE("rank 0 writes the checkpoint; it resumes on W ranks and on 1", "[mpi][data-parallel][resume]") {
  const auto world = dist::Communicator::world();
  const index_t W = world.size(), B = 2, steps = 12;
  const Batches<double> data(steps, W * B);
  const NoiseSchedule<double> schedule(schedule_config(100));
  const fs::path dir = fs::path(DDPM_TEST_TMP_DIR) / "mpi";
  if (world.rank() == 0) fs::create_directories(dir);
  world.barrier();
  // Each rank names its own file: only rank 0's may appear.
  const fs::path mine = dir / ("dp_ckpt_rank" + std::to_string(world.rank()) + ".safetensors");
  const fs::path ckpt = dir / "dp_ckpt_rank0.safetensors";
  if (world.rank() == 0) fs::remove(ckpt);
  world.barrier();
  fs::remove(mine);

  // Continuing without a break.
  Toy<double> a(kDim, kClasses, 1);
  TrainerT<double> ta(a, schedule, config());
  DP<double> da(ta, world);
  for (index_t s = 0; s < steps / 2; ++s) da.step(data.x0(s), data.cond(s));
  da.save(mine, {{"note", "halfway"}});
  CHECK(fs::exists(ckpt));  // complete on return, visible to every rank here
  if (world.rank() != 0) CHECK_FALSE(fs::exists(mine));
  for (index_t s = steps / 2; s < steps; ++s) da.step(data.x0(s), data.cond(s));

  // The checkpoint holds nothing rank-specific.
  const auto st = io::SafeTensors::load(ckpt);
  CHECK(st.metadata().at("ddpm.step") == std::to_string(steps / 2));
  CHECK(st.metadata().at("ddpm.rng.stream") == "0");
  CHECK(st.metadata().at("note") == "halfway");
  CHECK(st.metadata().at("ddpm.data_parallel.world_size") == std::to_string(W));

  SECTION("resume on W ranks (only rank 0 sees the file) equals continuing, bit for bit") {
    Toy<double> b(kDim, kClasses, 99 + static_cast<std::uint64_t>(world.rank()));
    TrainerT<double> tb(b, schedule, config());
    DP<double> db(tb, world);
    db.resume(world.rank() == 0 ? ckpt : fs::path("/nonexistent/ignored/on/other/ranks"));
    CHECK(tb.steps_done() == steps / 2);
    for (index_t s = steps / 2; s < steps; ++s) db.step(data.x0(s), data.cond(s));
    CHECK(bit_equal(a.parameters().values(), b.parameters().values()));
    CHECK(bit_equal(ta.ema()->weights(), tb.ema()->weights()));
    CHECK(bit_equal(ta.optimizer().exp_avg_sq(), tb.optimizer().exp_avg_sq()));
  }
  SECTION("resume on 1 rank at batch W*B equals continuing, within rounding") {
    Toy<double> c(kDim, kClasses, 7);
    TrainerT<double> tc(c, schedule, config());
    const auto self = dist::Communicator::self();
    DP<double> dc(tc, self);
    dc.resume(ckpt);
    CHECK(tc.steps_done() == steps / 2);
    for (index_t s = steps / 2; s < steps; ++s) dc.step(data.x0(s), data.cond(s));
    CHECK(max_rel_diff(c.parameters().values(), a.parameters().values()) < 1e-10);
    CHECK(max_rel_diff(tc.ema()->weights(), ta.ema()->weights()) < 1e-10);
  }
}

namespace {
// A training program written once against train::TrainingLoop: `steps`
// steps, a checkpoint, and the EMA weights (through EmaScope) as its result.
template <train::TrainingLoop Loop>
std::vector<double> run_program(Loop& loop, const Batches<double>& data, index_t steps, const fs::path& ckpt) {
  while (loop.steps_done() < steps) loop.step(data.x0(loop.steps_done()), data.cond(loop.steps_done()));
  loop.save(ckpt, {{"program", "TrainingLoop"}});
  const auto values = loop.model().parameters().values();
  const std::vector<double> live(values.begin(), values.end());
  std::vector<double> ema;
  {
    const train::EmaScope<double> use_ema(loop.ema(), values);
    ema.assign(values.begin(), values.end());
  }
  CHECK(bit_equal(live, values));  // the trained weights are back
  return ema;
}
}  // namespace

TEST_CASE("one TrainingLoop program runs a Trainer and DataParallel alike", "[mpi][data-parallel][loop]") {
  const auto world = dist::Communicator::world();
  const index_t W = world.size(), B = 2, steps = 8;
  const Batches<double> data(steps, W * B);
  const NoiseSchedule<double> schedule(schedule_config(100));
  const fs::path dir = fs::path(DDPM_TEST_TMP_DIR) / "mpi";
  if (world.rank() == 0) fs::create_directories(dir);
  world.barrier();

  Toy<double> a(kDim, kClasses, 1 + static_cast<std::uint64_t>(world.rank()));
  TrainerT<double> ta(a, schedule, config());
  DP<double> dp(ta, world);
  CHECK(dp.is_root() == (world.rank() == 0));
  const auto via_dp = run_program(dp, data, steps, dir / "loop_dp.safetensors");

  Toy<double> b(kDim, kClasses, 1);  // one process at the global batch, on every rank
  TrainerT<double> tb(b, schedule, config());
  CHECK(tb.is_root());
  const auto alone = dir / ("loop_alone_rank" + std::to_string(world.rank()) + ".safetensors");
  const auto via_trainer = run_program(tb, data, steps, alone);

  CHECK(dp.steps_done() == steps);
  CHECK(tb.steps_done() == steps);
  CHECK(max_rel_diff(via_dp, via_trainer) < 1e-10);
  CHECK(max_rel_diff(via_dp, ta.ema()->weights()) == 0);
  // Both checkpoints resume to the step they were saved at.
  world.barrier();
  Toy<double> c(kDim, kClasses, 5);
  TrainerT<double> tc(c, schedule, config());
  tc.resume(alone);
  CHECK(tc.steps_done() == steps);
  CHECK(io::SafeTensors::load(dir / "loop_dp.safetensors").metadata().at("program") == "TrainingLoop");
}

TEST_CASE("data-parallel errors reach every rank", "[mpi][data-parallel][errors]") {
  const auto world = dist::Communicator::world();
  const int W = world.size(), r = world.rank();
  const NoiseSchedule<float> schedule(schedule_config(50));
  Toy<float> m(kDim, kClasses, 3);
  TrainerT<float> t(m, schedule, config());
  DP<float> dp(t, world);
  const Batches<float> data(2, 2 * W + 1);
  const auto before = to_vector(m.parameters().values());

  SECTION("a global batch not divisible by the ranks") {
    if (W > 1) {
      const std::string n = std::to_string(2 * W + 1), ranks = std::to_string(W) + " ranks";
      CHECK_THROWS_WITH(dp.step(data.x0(0), data.cond(0)),
                        Catch::Contains("global batch of " + n) && Catch::Contains(ranks));
      CHECK_THROWS_WITH(dp.shard(2 * W + 1), Catch::Contains("global batch of " + n) && Catch::Contains(ranks));
    }
    CHECK(dp.shard(4 * W).size == 4);
    CHECK(dp.shard(4 * W).offset == 4 * r);
  }
  SECTION("shards of different sizes") {
    if (W > 1) {
      const index_t n = r == 0 ? 3 : 2;
      CHECK_THROWS_WITH(dp.step_local(data.x0(0).slice(0, n), {}, 3 * r),
                        Catch::Contains("same size") && Catch::Contains("3, 2"));
    }
  }
  SECTION("an error on one rank is thrown on all, naming that rank") {
    const int bad = W - 1;
    std::vector<std::int64_t> labels(r == bad ? 1 : 2, 0);  // wrong count on the last rank only
    CHECK_THROWS_WITH(dp.step_local(data.x0(0).slice(0, 2), {labels, {}}, 2 * r),
                      Catch::Contains("rank " + std::to_string(bad) + " of " + std::to_string(W)) &&
                          Catch::Contains("class labels"));
  }
  SECTION("a non-finite value on one rank's shard stops every rank, weights untouched") {
    Tensor<float> x({2 * W, kDim});
    for (index_t i = 0; i < x.numel(); ++i) x[i] = 0.1f * static_cast<float>(i % 7);
    x[x.numel() - 1] = NAN;  // in the last rank's shard
    CHECK_THROWS_WITH(dp.step(x.cview()), Catch::Contains("training step 0") && Catch::Contains("nan"));
    CHECK(bit_equal(m.parameters().values(), before));
    CHECK(t.steps_done() == 0);
    CHECK_NOTHROW(dp.verify_replicas());
  }
  SECTION("checkpoint errors: missing file, missing folder, wrong seed") {
    CHECK_THROWS_WITH(dp.resume("/nonexistent/dp.safetensors"),
                      Catch::Contains("rank 0") && Catch::Contains("file not found"));
    CHECK_THROWS_WITH(dp.save("/nonexistent/folder/dp.safetensors"), Catch::Contains("does not exist"));
    CHECK(bit_equal(m.parameters().values(), before));
    const fs::path dir = fs::path(DDPM_TEST_TMP_DIR) / "mpi";
    if (r == 0) fs::create_directories(dir);
    Toy<float> o(kDim, kClasses, 3);
    TrainerT<float> to(o, schedule, config(12345));
    DP<float> dop(to, world);
    dop.save(dir / "dp_other_seed.safetensors");
    CHECK_THROWS_WITH(dp.resume(dir / "dp_other_seed.safetensors"), Catch::Contains("seed"));
    CHECK_NOTHROW(dp.verify_replicas());  // every rank failed alike
  }
  SECTION("diverged replicas are detected") {
    if (W > 1) {
      if (r == 1) m.parameters().values()[0] += 1e-6f;
      CHECK_THROWS_WITH(dp.verify_replicas(), Catch::Contains("parameters on rank(s) 1"));
      CHECK_THROWS_WITH(dp.save(fs::path(DDPM_TEST_TMP_DIR) / "mpi" / "never.safetensors"),
                        Catch::Contains("diverged"));
      dp.broadcast_state(0);
      CHECK_NOTHROW(dp.verify_replicas());
    }
  }
  SECTION("trainers at different steps are refused") {
    Toy<float> o(kDim, kClasses, 3);
    TrainerT<float> to(o, schedule, config());
    if (r == 0) to.step(data.x0(0).slice(0, 2));
    if (W > 1) CHECK_THROWS_WITH((DP<float>(to, world)), Catch::Contains("different steps"));
  }
}
