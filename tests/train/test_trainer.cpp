// The shared training step: it learns, it resumes bit for bit, a split batch
// (what data-parallel ranks do) gives the full batch's gradients, and a
// diverged step is an error that names the step and leaves the weights alone.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <numbers>

#include "ddpm/backend/reference.hpp"
#include "ddpm/io/checkpoint.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "ddpm/train/trainer.hpp"
#include "support/tiny_unet.hpp"
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

namespace {
// A tiny U-Net with dropout in its ResNet blocks and a one-channel condition
// image (in_channels 2 = 1 noise + 1 condition channel).
using CondUNet = nn::UNet2D<float, backend::Reference>;
CondUNet cond_unet(std::uint64_t seed, double dropout = 0.2) {
  CondUNet m(test::tiny_unet_config(1, 1, dropout));
  Rng rng(seed);
  m.init(rng);
  return m;
}
train::TrainConfig cond_config() {
  auto c = config();
  c.condition_dropout = 0.3;
  return c;
}
// x0 [8, 1, 4, 4] and its condition (a blurred copy) [8, 1, 4, 4].
std::pair<Tensor<float>, Tensor<float>> cond_data() {
  Tensor<float> x({8, 1, 4, 4}), c({8, 1, 4, 4});
  Rng rng(12);
  rng.fill_normal(x.span());
  for (index_t i = 0; i < x.numel(); ++i) c[i] = 0.5f * x[i] + 0.1f * static_cast<float>(rng.normal());
  return {std::move(x), std::move(c)};
}
Conditioning<float> with_image(const Tensor<float>& c) {
  Conditioning<float> cond;
  cond.image = c.cview();
  return cond;
}
}  // namespace

TEST_CASE("with dropout and a condition image: N steps equal N/2, save, resume, N/2, bit for bit",
          "[trainer][resume][dropout][condition]") {
  NoiseSchedule<float> schedule({.num_train_timesteps = 50});
  const auto [x0, img] = cond_data();
  CondUNet a = cond_unet(1);
  train::Trainer<float, CondUNet> ta(a, schedule, cond_config());
  for (int s = 0; s < 6; ++s) ta.step(x0.cview(), with_image(img));

  const fs::path ckpt = fs::path(DDPM_TEST_TMP_DIR) / "trainer_resume_dropout_condition.safetensors";
  CondUNet b = cond_unet(1);
  {
    train::Trainer<float, CondUNet> tb(b, schedule, cond_config());
    for (int s = 0; s < 3; ++s) tb.step(x0.cview(), with_image(img));
    tb.save(ckpt);
  }
  CondUNet c = cond_unet(99);  // different initial weights: all must come from the checkpoint
  train::Trainer<float, CondUNet> tc(c, schedule, cond_config());
  tc.resume(ckpt);
  for (int s = 0; s < 3; ++s) tc.step(x0.cview(), with_image(img));
  const auto pa = a.parameters().values(), pc = c.parameters().values();
  REQUIRE(pa.size() == pc.size());
  CHECK(std::equal(pa.begin(), pa.end(), pc.begin()));
  const auto ea = ta.ema()->weights(), ec = tc.ema()->weights();
  CHECK(std::equal(ea.begin(), ea.end(), ec.begin()));
  // Dropout and the condition take part: without them the weights differ.
  CondUNet d = cond_unet(1, 0.0);
  train::Trainer<float, CondUNet> td(d, schedule, cond_config());
  for (int s = 0; s < 6; ++s) td.step(x0.cview(), with_image(img));
  CHECK(!std::equal(pa.begin(), pa.end(), d.parameters().values().begin()));
}

TEST_CASE("with dropout and a condition image, a batch split in two gives the full batch's gradients",
          "[trainer][data-parallel][dropout][condition]") {
  // Each sample's t, noise, condition dropout and dropout masks come from its
  // global index: two halves at offsets 0 and 4 are the batch of 8.
  NoiseSchedule<float> schedule({.num_train_timesteps = 100});
  const auto [x0, img] = cond_data();
  CondUNet m = cond_unet(2, 0.3);
  train::Trainer<float, CondUNet> t(m, schedule, cond_config());
  const double full_loss = t.compute_gradients(x0.cview(), with_image(img));
  const std::vector<float> full(m.parameters().grads().begin(), m.parameters().grads().end());
  Conditioning<float> c0, c1;
  c0.image = img.cview().slice(0, 4);
  c1.image = img.cview().slice(4, 4);
  const double l0 = t.compute_gradients(x0.cview().slice(0, 4), c0, 0);
  const std::vector<float> half(m.parameters().grads().begin(), m.parameters().grads().end());
  const double l1 = t.compute_gradients(x0.cview().slice(4, 4), c1, 4);
  CHECK((l0 + l1) / 2 == Approx(full_loss).epsilon(1e-5));
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < full.size(); ++i) {
    worst = std::max(worst, std::abs((half[i] + m.parameters().grads()[i]) / 2.0 - full[i]));
    scale = std::max(scale, std::abs(static_cast<double>(full[i])));
  }
  CHECK(worst < 1e-5 * scale);
}

TEST_CASE("condition_dropout 1 trains on zero images exactly", "[trainer][condition]") {
  // The dropout draw comes after t and eps in each sample's stream, so it
  // changes nothing else: dropping every image equals passing zeros.
  NoiseSchedule<float> schedule({.num_train_timesteps = 100});
  const auto [x0, img] = cond_data();
  Tensor<float> zeros(img.shape(), 0.0f);
  CondUNet m = cond_unet(3);
  auto all = config();
  all.condition_dropout = 1.0;
  train::Trainer<float, CondUNet> t1(m, schedule, all);
  const double l1 = t1.compute_gradients(x0.cview(), with_image(img));
  const std::vector<float> g1(m.parameters().grads().begin(), m.parameters().grads().end());
  train::Trainer<float, CondUNet> t0(m, schedule, config());
  const double l0 = t0.compute_gradients(x0.cview(), with_image(zeros));
  CHECK(l0 == l1);
  CHECK(std::equal(g1.begin(), g1.end(), m.parameters().grads().begin()));
  const double lk = t0.compute_gradients(x0.cview(), with_image(img));
  CHECK(lk != l1);
  // A condition of another batch size is an error.
  CHECK_THROWS_WITH(t0.compute_gradients(x0.cview(), with_image(zeros), 0) + t0.compute_gradients(x0.cview().slice(0, 4), with_image(img)),
                    Catch::Contains("condition image [8, 1, 4, 4] for a batch x0 [4, 1, 4, 4]"));
  auto bad = config();
  bad.condition_dropout = 1.5;
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("condition_dropout"));
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

TEST_CASE("set_lr_schedule: later steps use the new schedule, earlier ones kept theirs", "[trainer]") {
  NoiseSchedule<double> schedule({.num_train_timesteps = 100});
  ToyDenoiser<double> model(4);
  auto c = config();
  c.lr = {.base_lr = 1e-2, .warmup_steps = 10, .total_steps = 0, .min_lr = 0};
  train::Trainer<double, ToyDenoiser<double>> trainer(model, schedule, c);
  const auto x0 = data<double>(8, 4, 1);
  for (int s = 0; s < 5; ++s) CHECK(trainer.step(x0.cview()).lr == Approx(1e-2 * (s + 1) / 10).epsilon(1e-15));
  // A time-limited run fits its total after a few steps: the warm-up goes on,
  // then the cosine decay ends at step 40 at 1e-3.
  const train::LrSchedule fitted{.base_lr = 1e-2, .warmup_steps = 10, .total_steps = 40, .min_lr = 1e-3};
  trainer.set_lr_schedule(fitted);
  for (int s = 5; s < 45; ++s) {
    const auto st = trainer.step(x0.cview());
    CHECK(st.lr == fitted(s));
    if (s == 25) CHECK(st.lr == Approx(1e-3 + 0.5 * 9e-3 * (1 + std::cos(std::numbers::pi * 15.0 / 30.0))));
    if (s >= 40) CHECK(st.lr == Approx(1e-3));
  }
  CHECK(trainer.config().lr.total_steps == 40);
  // An invalid schedule is refused and the old one kept.
  CHECK_THROWS_WITH(trainer.set_lr_schedule({.base_lr = 1e-2, .warmup_steps = 50, .total_steps = 40}),
                    Catch::Contains("must exceed warmup_steps"));
  CHECK(trainer.config().lr.total_steps == 40);
}
