// The shared training step: it learns, it resumes bit for bit, a split batch
// (what data-parallel ranks do) gives the full batch's gradients, and a
// diverged step is an error that names the step and leaves the weights alone.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <memory>

#include "ddpm/io/checkpoint.hpp"
#include "ddpm/train/trainer.hpp"
#include "support/toy_denoiser.hpp"

using namespace ddpm;
namespace fs = std::filesystem;

namespace {
template <Scalar T>
using ToyDenoiser = test::Toy<T>;

template <Scalar T>
Tensor<T> data(index_t n, index_t d, std::uint64_t seed) {
  return test::toy_data<T>(n, d, seed);
}

train::TrainConfig config(std::uint64_t seed = 3) { return test::toy_train_config(seed); }
}  // namespace

TEST_CASE("training lowers the loss", "[trainer]") {
  NoiseSchedule<double> schedule({.num_train_timesteps = 100});
  ToyDenoiser<double> model(4);
  train::Trainer<double, ToyDenoiser<double>> trainer(model, schedule, config());
  const auto x0 = data<double>(64, 4, 9);
  double first = 0, last = 0;
  for (int s = 0; s < 200; ++s) {
    const auto st = trainer.step(x0.cview());
    if (s < 20) first += st.loss / 20;
    if (s >= 180) last += st.loss / 20;
  }
  CHECK(last < 0.8 * first);
  CHECK(trainer.steps_done() == 200);
}

TEST_CASE("N steps equal N/2 steps, save, resume, N/2 steps, bit for bit", "[trainer][resume]") {
  NoiseSchedule<float> schedule({.num_train_timesteps = 50});
  const auto x0 = data<float>(16, 3, 2);
  ToyDenoiser<float> a(3);
  train::Trainer<float, ToyDenoiser<float>> ta(a, schedule, config());
  for (int s = 0; s < 10; ++s) ta.step(x0.cview());

  const fs::path ckpt = fs::path(DDPM_TEST_TMP_DIR) / "trainer_resume.safetensors";
  ToyDenoiser<float> b(3);
  {
    train::Trainer<float, ToyDenoiser<float>> tb(b, schedule, config());
    for (int s = 0; s < 5; ++s) tb.step(x0.cview());
    tb.save(ckpt);
  }
  ToyDenoiser<float> c(3, 0, 777);  // different initial weights: all must come from the checkpoint
  train::Trainer<float, ToyDenoiser<float>> tc(c, schedule, config());
  tc.resume(ckpt);
  CHECK(tc.steps_done() == 5);
  for (int s = 0; s < 5; ++s) tc.step(x0.cview());
  const auto pa = a.parameters().values(), pc = c.parameters().values();
  REQUIRE(pa.size() == pc.size());
  for (std::size_t i = 0; i < pa.size(); ++i) CHECK(pa[i] == pc[i]);
  const auto ea = ta.ema()->weights(), ec = tc.ema()->weights();
  for (std::size_t i = 0; i < ea.size(); ++i) CHECK(ea[i] == ec[i]);
  // A checkpoint from another seed is refused.
  ToyDenoiser<float> d(3);
  train::Trainer<float, ToyDenoiser<float>> td(d, schedule, config(4));
  const std::vector<float> before(d.parameters().values().begin(), d.parameters().values().end());
  CHECK_THROWS_WITH(td.resume(ckpt), Catch::Contains("seed"));
  for (std::size_t i = 0; i < before.size(); ++i) CHECK(d.parameters().values()[i] == before[i]);
}

TEST_CASE("a batch split in two gives the full batch's gradients", "[trainer][data-parallel]") {
  // What two data-parallel ranks do: each computes its half with its global
  // offset; the average of their gradients is the full batch's gradient.
  NoiseSchedule<double> schedule({.num_train_timesteps = 100});
  const auto x0 = data<double>(8, 3, 5);
  ToyDenoiser<double> m(3);
  train::Trainer<double, ToyDenoiser<double>> t(m, schedule, config());
  const double full_loss = t.compute_gradients(x0.cview());
  const std::vector<double> full(m.parameters().grads().begin(), m.parameters().grads().end());
  const double l0 = t.compute_gradients(x0.cview().slice(0, 4), {}, 0);
  std::vector<double> half(m.parameters().grads().begin(), m.parameters().grads().end());
  const double l1 = t.compute_gradients(x0.cview().slice(4, 4), {}, 4);
  CHECK((l0 + l1) / 2 == Approx(full_loss).epsilon(1e-13));
  for (std::size_t i = 0; i < full.size(); ++i)
    CHECK((half[i] + m.parameters().grads()[i]) / 2 == Approx(full[i]).epsilon(1e-12).margin(1e-15));
}

TEST_CASE("a non-finite loss stops training with the step named, weights untouched", "[trainer][errors]") {
  NoiseSchedule<float> schedule({.num_train_timesteps = 50});
  ToyDenoiser<float> m(2);
  train::Trainer<float, ToyDenoiser<float>> t(m, schedule, config());
  auto x0 = data<float>(4, 2, 1);
  t.step(x0.cview());
  const std::vector<float> before(m.parameters().values().begin(), m.parameters().values().end());
  x0[3] = NAN;
  CHECK_THROWS_WITH(t.step(x0.cview()), Catch::Contains("training step 1") && Catch::Contains("nan"));
  for (std::size_t i = 0; i < before.size(); ++i) CHECK(m.parameters().values()[i] == before[i]);
  CHECK(t.steps_done() == 1);
}

TEST_CASE("trainer configuration errors", "[trainer][errors]") {
  auto c = config();
  c.label_dropout = 0.1;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("null_label"));
  c.label_dropout = 1.5;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("label_dropout"));
  c = config();
  c.min_snr_gamma = -1;
  CHECK_THROWS_WITH(c.validate(), Catch::Contains("min_snr_gamma"));
}
