// Data-parallel autoencoder training (run under mpirun -np 2): the same
// DataParallel wrapper over a Trainer with AutoencoderObjective. W ranks at
// batch B give one process's weights at batch W * B (each sample's posterior
// noise comes from its own stream, every loss term is a batch mean), the
// replicas stay identical, and a checkpoint resumes bit for bit.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>

#include "ddpm/backend/reference.hpp"
#include "ddpm/distributed/data_parallel.hpp"
#include "ddpm/nn/autoencoder_kl.hpp"
#include "ddpm/nn/vq_model.hpp"
#include "ddpm/train/autoencoder_objective.hpp"
#include "ddpm/train/trainer.hpp"
#include "ddpm/train/training_loop.hpp"
#include "support/tiny_autoencoder.hpp"

#ifndef DDPM_TEST_TMP_DIR
#define DDPM_TEST_TMP_DIR "/tmp"
#endif

using namespace ddpm;
namespace fs = std::filesystem;
namespace dist = ddpm::distributed;

namespace {

template <class Config>
Config tiny_ae(Config c) {
  c = ddpm::test::tiny_autoencoder(c);
  c.latent_channels = 2;
  return c;
}

template <class T, class Model>
using AETrainer = train::Trainer<T, Model, train::AutoencoderObjective<T, Model>>;
template <class T, class Model>
using AEDP = dist::DataParallel<T, Model, train::AutoencoderObjective<T, Model>>;
static_assert(train::TrainingLoop<AEDP<float, nn::AutoencoderKL<float, backend::Reference>>>);

template <class T>
Tensor<T> ae_images(index_t n, std::uint64_t seed) {
  Tensor<T> x({n, 2, 8, 8});
  Rng rng(seed);
  for (index_t i = 0; i < x.numel(); ++i)
    x[i] = static_cast<T>(0.6 * std::sin(0.29 * static_cast<double>(i)) + 0.2 * rng.normal());
  return x;
}

train::TrainConfig ae_config() {
  train::TrainConfig c;
  c.lr = {.base_lr = 2e-3, .warmup_steps = 2, .total_steps = 100, .min_lr = 1e-4};
  c.adam.weight_decay = 1e-2;
  c.ema_decay = 0.9;
  c.grad_clip_norm = 0.5;
  c.seed = 17;
  return c;
}

template <class S>
double max_rel(const S& a, const S& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
    m = std::max(m, std::abs(x - y) / std::max(1e-3, std::abs(y)));
  }
  return m;
}

// W ranks at batch B against one process (MPI_COMM_SELF, on every rank) at batch W * B.
template <class Model>
void check_ae_equivalence(typename Model::config_type cfg, train::AutoencoderLossConfig loss, double tolerance) {
  using T = typename Model::scalar_type;
  const auto world = dist::Communicator::world();
  const index_t W = world.size(), B = 2, steps = 6;
  const auto data = ae_images<T>(steps * W * B, 3);

  Model m(cfg);
  Rng init(1 + static_cast<std::uint64_t>(world.rank()));  // rank 0's weights are broadcast
  m.init(init);
  AETrainer<T, Model> t(m, train::AutoencoderObjective<T, Model>(loss), ae_config());
  AEDP<T, Model> dp(t, world);

  Model ref(cfg);
  Rng init_ref(1);
  ref.init(init_ref);
  AETrainer<T, Model> tref(ref, train::AutoencoderObjective<T, Model>(loss), ae_config());
  const auto self = dist::Communicator::self();
  AEDP<T, Model> dref(tref, self);

  double worst_loss = 0;
  for (index_t s = 0; s < steps; ++s) {
    const auto batch = data.cview().slice(s * W * B, W * B);
    const auto a = dp.step(batch);
    const auto b = dref.step(batch);
    worst_loss = std::max(worst_loss, std::abs(a.loss - b.loss) / b.loss);
  }
  const double dw = max_rel(m.parameters().values(), ref.parameters().values());
  const double de = max_rel(t.ema()->weights(), tref.ema()->weights());
  const double dv = max_rel(t.optimizer().exp_avg_sq(), tref.optimizer().exp_avg_sq());
  if (world.rank() == 0)
    WARN("autoencoder: " << W << " ranks x batch " << B << " vs 1 x " << W * B << " after " << steps << " steps ("
                         << sizeof(T) * 8 << "-bit): max relative difference weights " << dw << ", EMA " << de
                         << ", Adam v " << dv << ", loss " << worst_loss);
  CHECK(dw < tolerance);
  CHECK(de < tolerance);
  CHECK(worst_loss < tolerance);
  CHECK_NOTHROW(dp.verify_replicas());
}

}  // namespace

TEST_CASE("AutoencoderKL: W ranks at batch B equal one process at batch W*B (posterior samples)",
          "[mpi][data-parallel][autoencoder]") {
  check_ae_equivalence<nn::AutoencoderKL<double, backend::Reference>>(
      tiny_ae(nn::AutoencoderKLConfig{}), {.reconstruction = train::ReconstructionLoss::l2, .kl_weight = 1e-2}, 1e-10);
}

TEST_CASE("VQModel: W ranks at batch B equal one process at batch W*B", "[mpi][data-parallel][autoencoder]") {
  auto c = tiny_ae(nn::VQModelConfig{});
  c.latent_channels = 3;
  c.vq_embed_dim = 2;
  c.num_vq_embeddings = 5;
  check_ae_equivalence<nn::VQModel<double, backend::Reference>>(
      c, {.reconstruction = train::ReconstructionLoss::l1, .codebook_weight = 1.0}, 1e-10);
}

TEST_CASE("AutoencoderKL data-parallel: a checkpoint resumes bit for bit", "[mpi][data-parallel][autoencoder][resume]") {
  using Model = nn::AutoencoderKL<float, backend::Reference>;
  const auto world = dist::Communicator::world();
  const index_t W = world.size(), B = 2, steps = 6;
  const auto data = ae_images<float>(steps * W * B, 4);
  const auto cfg = tiny_ae(nn::AutoencoderKLConfig{});
  const fs::path dir = fs::path(DDPM_TEST_TMP_DIR) / "mpi";
  if (world.rank() == 0) fs::create_directories(dir);
  world.barrier();
  const fs::path ckpt = dir / "dp_ae_ckpt.safetensors";

  Model a(cfg);
  Rng ia(1);
  a.init(ia);
  AETrainer<float, Model> ta(a, train::AutoencoderObjective<float, Model>(), ae_config());
  AEDP<float, Model> da(ta, world);
  for (index_t s = 0; s < steps; ++s) {
    da.step(data.cview().slice(s * W * B, W * B));
    if (s == 2) da.save(ckpt);
  }
  Model b(cfg);
  Rng ib(50 + static_cast<std::uint64_t>(world.rank()));
  b.init(ib);
  AETrainer<float, Model> tb(b, train::AutoencoderObjective<float, Model>(), ae_config());
  AEDP<float, Model> db(tb, world);
  db.resume(ckpt);
  CHECK(tb.steps_done() == 3);
  for (index_t s = 3; s < steps; ++s) db.step(data.cview().slice(s * W * B, W * B));
  const auto va = a.parameters().values(), vb = b.parameters().values();
  CHECK(std::memcmp(va.data(), vb.data(), va.size_bytes()) == 0);
  const auto ea = ta.ema()->weights(), eb = tb.ema()->weights();
  CHECK(std::memcmp(ea.data(), eb.data(), ea.size_bytes()) == 0);
  const auto ma = ta.optimizer().exp_avg(), mb = tb.optimizer().exp_avg();
  CHECK(std::memcmp(ma.data(), mb.data(), ma.size_bytes()) == 0);
}
