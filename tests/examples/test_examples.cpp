// Smoke test of the examples' code paths on a tiny synthetic digit set the
// test writes itself: IDX round trip, train (checkpoint, resume), the
// diffusers folder, sampling with guidance to PNG and IDX, denoise, inpaint,
// trajectory, the classifier and the Frechet distance. With the shipped,
// trained model: denoising raises PSNR, and a trajectory from noise ends
// nearer the data (MNIST's pixel statistics) than it starts, inversion
// regenerates digits and translation redraws them. The invert/translate
// commands refuse bad input files with one line.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <filesystem>
#include <optional>
#include <vector>

#include "../../examples/mnist/classifier.hpp"
#include "../../examples/mnist/commands.hpp"
#include "../../examples/mnist/tasks.hpp"
#include "../../examples/mnist/train.hpp"
#include "ddpm/io/diffusers.hpp"
#include "ddpm/io/idx.hpp"
#include "synthetic_digits.hpp"

namespace fs = std::filesystem;
using ddpm::index_t;

using examples_test::write_synthetic;

TEST_CASE("mnist example: train, resume, sample, denoise, inpaint, trajectory", "[examples][mnist]") {
  ddpm::backend::Cpu::set_num_threads(1);
  const fs::path root = fs::path(DDPM_TEST_TMP_DIR) / "examples_mnist";
  fs::remove_all(root);
  const fs::path data = write_synthetic(root / "data", 40, 20);
  const auto train = mnist::load_split(data, "train");
  REQUIRE(train.size() == 40);
  CHECK(train.labels[13] == 3);

  mnist::TrainOptions o;
  o.data = data;
  o.out = root / "run";
  o.width = 8;
  o.steps = 3;
  o.batch = 8;
  o.checkpoint_every = 2;
  o.sample_every = 3;
  REQUIRE(mnist::train(o) == 0);
  CHECK(fs::exists(o.out / "checkpoint.safetensors"));
  CHECK(fs::exists(o.out / "model" / "config.json"));
  CHECK(fs::exists(o.out / "samples_000003.png"));
  o.steps = 4;
  o.resume = true;
  o.sample_every = 0;
  REQUIRE(mnist::train(o) == 0);

  auto unet = ddpm::io::load_unet2d<float, ddpm::backend::Cpu>(o.out / "model");
  REQUIRE(unet.config().num_class_embeds == 11);
  const std::vector<std::int64_t> labels{3, 7};
  mnist::GenerateOptions g{.sampler = "ddim", .steps = 3, .guidance = 2.0, .seed = 1, .progress = false};
  const auto a = mnist::generate(unet, labels, g);
  const auto b = mnist::generate(unet, labels, g);
  REQUIRE(a.shape() == ddpm::Shape{2, 1, 28, 28});
  for (index_t i = 0; i < a.numel(); ++i) REQUIRE(a[i] == b[i]);  // same seed, same digits
  ddpm::io::write_idx_images(root / "s.idx", a.cview());
  CHECK(ddpm::io::read_idx(root / "s.idx").dims == std::vector<index_t>{2, 28, 28});

  const auto test = mnist::load_split(data, "t10k");
  const auto clean = test.images.cview().slice(0, 3);
  const auto den = mnist::denoise(unet, clean, 0.5, "ddim", 10, 0);
  CHECK(std::isfinite(den.psnr_noisy));
  CHECK(std::isfinite(den.psnr_denoised));
  CHECK(den.denoised.shape() == clean.shape());

  const auto mask = mnist::rectangle_mask(0, 14, 28, 14);
  const auto filled = mnist::inpaint(unet, clean, mask.cview(), "ddpm", 4, 2, -1, 0);
  for (index_t i = 0; i < filled.numel(); ++i)
    if (mask[i % 784] > 0.5f) REQUIRE(filled[i] == Approx(clean[i]).margin(1e-5));  // known pixels kept
  CHECK_THROWS_WITH(mnist::inpaint(unet, clean, mask.cview(), "dpm++", 4, 2, -1, 0), Catch::Contains("ddpm or ddim"));

  const auto strip = mnist::trajectory(unet, labels, 4, {.sampler = "ddpm", .steps = 6, .guidance = 1.0});
  CHECK(strip.shape() == ddpm::Shape{8, 1, 28, 28});
  CHECK_THROWS_WITH(mnist::rectangle_mask(20, 20, 10, 10), Catch::Contains("inside"));
}

namespace {

// How far a set of [-1, 1] images (those of `x` at `images`) is from MNIST's
// pixel statistics: |mean - m| + |std - s| over all their pixels, with
// MNIST's mean 0.1307 and standard deviation 0.3081 on the [0, 1] scale (the
// constants torchvision normalises MNIST with), i.e. m = -0.7386, s = 0.6162
// here. N(0, 1) noise is about 1.1 away; a set of digits (mostly paper at -1,
// some ink near +1) a few tenths at most. Dataset-wide constants, so a set of
// several digits is measured, not one (a 0 has more ink than a 1).
double distance_to_mnist_moments(ddpm::ConstTensorView<float> x, const std::vector<index_t>& images) {
  constexpr double m = 2 * 0.1307 - 1, s = 2 * 0.3081;
  const index_t per = x.numel() / x.dim(0);
  double sum = 0, sq = 0;
  for (index_t i : images)
    for (index_t k = 0; k < per; ++k) {
      const double v = x[i * per + k];
      sum += v;
      sq += v * v;
    }
  const double n = static_cast<double>(per) * static_cast<double>(images.size());
  const double mean = sum / n, sd = std::sqrt(std::max(sq / n - mean * mean, 0.0));
  return std::abs(mean - m) + std::abs(sd - s);
}

// Fraction of pixels within 0.25 of paper (-1) or ink (+1): MNIST digits are
// nearly binary (most pixels are one or the other); N(0, 1) noise gives 0.24.
std::vector<double> paper_or_ink_fraction(ddpm::ConstTensorView<float> x) {
  std::vector<double> out;
  const index_t per = x.numel() / x.dim(0);
  for (index_t i = 0; i < x.dim(0); ++i) {
    index_t n = 0;
    for (index_t k = 0; k < per; ++k) n += std::abs(std::abs(x[i * per + k]) - 1.0f) <= 0.25f ? 1 : 0;
    out.push_back(static_cast<double>(n) / static_cast<double>(per));
  }
  return out;
}

// The shipped model, examples/models/mnist_cond.
mnist::UNet shipped_model() {
  return ddpm::io::load_unet2d<float, ddpm::backend::Cpu>(fs::path(DDPM_SOURCE_DIR) / "examples" / "models" /
                                                          "mnist_cond");
}

}  // namespace

// The shipped model (examples/models/mnist_cond, trained on MNIST) does what
// the examples claim: its denoiser raises PSNR, and its reverse process moves
// noise toward digits.
TEST_CASE("mnist example: a time budget fits the step count to the limit and stops in time", "[examples][mnist]") {
  // A simulated clock: the run starts 1.5 s in (loading), the first 3 steps
  // take 0.5 s each (allocation), every later one 0.25 s.
  double now = 100.0;
  mnist::TimeBudget budget(60.0, [&] { return now; });
  now += 1.5;
  const double usable = 0.97 * 60.0 - 2.0;
  CHECK(budget.usable() == Approx(usable));
  std::optional<std::int64_t> fitted;
  std::int64_t done = 0;
  for (; done < 10'000 && !budget.out_of_time();) {
    now += done < 3 ? 0.5 : 0.25;
    ++done;
    if (const auto f = budget.fit(0, done, 10'000)) {
      if (!fitted) CHECK(done == mnist::TimeBudget::kSkipped + mnist::TimeBudget::kTimed);  // the first fit
      else CHECK(*f == *fitted);  // refits at the same rate give the same count
      CHECK((done - 23) % mnist::TimeBudget::kRefitEvery == 0);
      fitted = f;
    }
  }
  REQUIRE(fitted);
  CHECK(budget.step_seconds() == Approx(0.25));
  // At the fit: 1.5 + 3 * 0.5 + 20 * 0.25 = 8 s spent, (usable - 8) / 0.25 more steps.
  CHECK(*fitted == 23 + static_cast<std::int64_t>((usable - 8.0) / 0.25));
  // The loop stops at the fitted count, within the usable time.
  CHECK(done == *fitted);
  CHECK(budget.elapsed() <= usable);
  CHECK(budget.elapsed() > usable - 0.25);

  // Steps that get slower after the first fit (sample grids, a busy machine):
  // the refits shorten the run, which still ends within the usable time.
  now = 0;
  mnist::TimeBudget slower(60.0, [&] { return now; });
  std::int64_t total = 10'000, steps = 0;
  std::vector<std::int64_t> totals;
  while (steps < total && !slower.out_of_time()) {
    now += steps < 23 ? 0.25 : 0.375;  // binary fractions: the arithmetic is exact
    ++steps;
    if (const auto f = slower.fit(0, steps, total)) totals.push_back(total = *f);
  }
  REQUIRE(totals.size() >= 2);
  CHECK(totals[0] == 23 + static_cast<std::int64_t>((usable - 5.75) / 0.25));  // 23 steps of 0.25 s
  CHECK(totals.back() < totals[0]);
  CHECK(steps >= totals.back() - 1);
  CHECK(slower.elapsed() <= usable);
  CHECK(slower.elapsed() > usable - 0.75);

  // Steps that get faster after the first fit (a busy moment while timing):
  // the refits lengthen the run up to the time limit.
  now = 0;
  mnist::TimeBudget faster(60.0, [&] { return now; });
  total = 10'000, steps = 0;
  totals.clear();
  while (steps < total && !faster.out_of_time()) {
    now += steps < 23 ? 0.5 : 0.25;
    ++steps;
    if (const auto f = faster.fit(0, steps, 10'000)) totals.push_back(total = *f);
  }
  REQUIRE(totals.size() >= 2);
  CHECK(totals[0] == 23 + static_cast<std::int64_t>((usable - 11.5) / 0.5));
  CHECK(totals.back() > totals[0]);
  CHECK(faster.elapsed() <= usable);
  CHECK(faster.elapsed() > usable - 0.5);

  // A cap (--steps given) bounds the count; a resumed run times from where it started.
  now = 0;
  mnist::TimeBudget capped(600.0, [&] { return now; });
  std::optional<std::int64_t> f;
  for (std::int64_t d = 500; !f; ++d) {
    now += 0.1;
    f = capped.fit(500, d + 1, 800);
  }
  CHECK(*f == 800);

  // Steps slower than the whole budget: no more steps than those taken.
  now = 0;
  mnist::TimeBudget tight(10.0, [&] { return now; });
  std::optional<std::int64_t> g;
  for (std::int64_t d = 0; !g; ++d) {
    now += 1.0;
    g = tight.fit(0, d + 1, 10'000);
  }
  CHECK(*g == 23);
  CHECK(tight.out_of_time());
}

TEST_CASE("mnist example: train --time-limit writes the EMA model when time is up", "[examples][mnist]") {
  ddpm::backend::Cpu::set_num_threads(1);
  const fs::path root = fs::path(DDPM_TEST_TMP_DIR) / "examples_mnist_time_limit";
  fs::remove_all(root);
  mnist::TrainOptions o;
  o.data = write_synthetic(root / "data", 40, 20);
  o.out = root / "run";
  o.width = 8;
  o.batch = 4;
  o.steps = 10'000;  // the cap: the time limit ends the run
  o.sample_every = 0;
  o.checkpoint_every = 100'000;
  o.time_limit = 3.5;
  REQUIRE(mnist::train(o) == 0);
  // The final checkpoint and export happen however many steps fitted.
  CHECK(fs::exists(o.out / "checkpoint.safetensors"));
  CHECK(ddpm::io::load_unet2d<float, ddpm::backend::Cpu>(o.out / "model").config().num_class_embeds == 11);
}

TEST_CASE("mnist example with the shipped model: denoising raises PSNR and a trajectory ends nearer the data",
          "[examples][mnist]") {
  ddpm::backend::Cpu::set_num_threads(1);
  auto unet = shipped_model();
  const std::vector<std::int64_t> labels{0, 3, 7, 8};

  SECTION("a trajectory from noise ends nearer MNIST's statistics than it starts") {
    const int snapshots = 4;
    const auto strip =
        mnist::trajectory(unet, labels, snapshots, {.sampler = "ddpm", .steps = 20, .guidance = 3.0, .seed = 5});
    REQUIRE(strip.dim(0) == static_cast<index_t>(labels.size()) * snapshots);
    // Per sample: nearly binary at the end, as digits are.
    const auto f = paper_or_ink_fraction(strip.cview());
    std::vector<index_t> starts, ends;
    for (std::size_t i = 0; i < labels.size(); ++i) {
      const auto first = static_cast<index_t>(i) * snapshots, last = first + snapshots - 1;
      starts.push_back(first);
      ends.push_back(last);
      INFO("digit " << labels[i] << ": paper-or-ink fraction " << f[first] << " -> " << f[last]);
      CHECK(f[first] < 0.35);  // x_T is noise
      CHECK(f[last] > 0.7);
    }
    // The set of samples: MNIST's pixel mean and spread.
    const double d_start = distance_to_mnist_moments(strip.cview(), starts);
    const double d_end = distance_to_mnist_moments(strip.cview(), ends);
    INFO("distance to MNIST's pixel moments: " << d_start << " at x_T -> " << d_end << " at the end");
    CHECK(d_start > 0.8);
    CHECK(d_end < 0.5 * d_start);  // measured: 1.10 -> 0.33 (0, 3, 7 and 8 carry more ink than MNIST's average)
  }

  SECTION("denoising digits raises PSNR") {
    // Clean digits from the model itself (in distribution), noised at two levels.
    mnist::GenerateOptions g{.sampler = "ddim", .steps = 20, .guidance = 3.0, .seed = 11, .progress = false};
    const auto clean = mnist::generate(unet, labels, g);
    for (double sigma : {0.3, 0.6}) {
      const auto den = mnist::denoise(unet, clean.cview(), sigma, "ddim", 10, 3);
      INFO("sigma " << sigma << ": PSNR " << den.psnr_noisy << " dB noisy -> " << den.psnr_denoised << " dB denoised");
      CHECK(den.psnr_denoised > den.psnr_noisy + 3.0);
    }
  }
}

TEST_CASE("mnist example: classifier and Frechet distance", "[examples][classifier]") {
  ddpm::backend::Cpu::set_num_threads(1);
  const fs::path root = fs::path(DDPM_TEST_TMP_DIR) / "examples_classifier";
  fs::remove_all(root);
  const fs::path data = write_synthetic(root / "data", 200, 50);
  const auto train = mnist::load_split(data, "train");
  const auto test = mnist::load_split(data, "t10k");
  mnist::Classifier net;
  mnist::train_classifier(net, train, {.epochs = 8, .batch = 20, .lr = 3e-3, .max_shift = 0});
  ddpm::Tensor<float> f;
  const auto pred = mnist::classify(net, test.images.cview(), &f);
  CHECK(mnist::accuracy(pred, test.labels) > 0.9);  // bars at ten heights: easy (unshifted)
  net.save(root / "c.safetensors");
  mnist::Classifier again;
  again.load(root / "c.safetensors");
  CHECK(mnist::classify(again, test.images.cview()) == pred);
  // Frechet distance: ~0 for a set against itself, larger for a shifted set.
  CHECK(mnist::frechet_distance(f.cview(), f.cview()) == Approx(0).margin(0.05));  // rank-deficient (50 < 128): rounding in the square roots
  ddpm::Tensor<float> shifted = f;
  for (index_t i = 0; i < shifted.numel(); ++i) shifted[i] += 1.0f;
  CHECK(mnist::frechet_distance(f.cview(), shifted.cview()) == Approx(128.0).epsilon(1e-3));
}

TEST_CASE("mnist example: psnr", "[examples]") {
  ddpm::Tensor<float> a({1, 4}, std::vector<float>{-1, -1, 1, 1}), b({1, 4}, std::vector<float>{-1, -1, 1, 0});
  // One pixel off by 0.5 on the [0, 1] scale: mse 0.0625, 10 log10(16) dB.
  CHECK(mnist::psnr(a.cview(), b.cview()) == Approx(10.0 * std::log10(16.0)));
}

TEST_CASE("mnist example with the shipped model: inversion regenerates digits, translation redraws them",
          "[examples][mnist][inversion]") {
  ddpm::backend::Cpu::set_num_threads(1);
  auto unet = shipped_model();
  // Digits from the model itself (in distribution).
  const std::vector<std::int64_t> labels{1, 3, 7, 8};
  const auto digits =
      mnist::generate(unet, labels, {.sampler = "ddim", .steps = 20, .guidance = 3.0, .seed = 7, .progress = false});
  mnist::EditOptions o{.steps = 20, .fixed_point = 1, .progress = false};

  const auto inv = mnist::invert_digits(unet, digits.cview(), labels, o);
  INFO("inversion, 20 steps: mean PSNR " << inv.mean_psnr << " dB");
  CHECK(inv.mean_psnr > 28.0);  // measured 33.6 dB (one fixed-point refinement)
  // The latent is noise: near zero mean, unit spread.
  double mean = 0, sq = 0;
  for (index_t i = 0; i < inv.latent.numel(); ++i) mean += inv.latent[i], sq += inv.latent[i] * inv.latent[i];
  mean /= static_cast<double>(inv.latent.numel());
  const double sd = std::sqrt(sq / static_cast<double>(inv.latent.numel()) - mean * mean);
  INFO("latent mean " << mean << ", standard deviation " << sd);
  CHECK(std::abs(mean) < 0.2);
  CHECK(sd == Approx(1.0).margin(0.25));

  // Translating to the own label with guidance 1 both ways is inversion.
  const auto same = mnist::translate_digits(unet, digits.cview(), labels, labels, o);
  for (index_t i = 0; i < same.numel(); ++i) REQUIRE(same[i] == Approx(inv.reconstructed[i]).margin(1e-5));

  // To another class: a different picture, with ink of the same order (a 1
  // turned into a 0 gains ink; mean relative change measured 0.44 at
  // guidance 1.5, 0.75 at guidance 3).
  o.generation_guidance = 1.5;
  const std::vector<std::int64_t> to(labels.size(), 0);
  const auto y = mnist::translate_digits(unet, digits.cview(), labels, to, o);
  const double change = mnist::mean_relative_ink_change(digits.cview(), y.cview());
  INFO("translation to 0: PSNR against the input " << mnist::psnr(y.cview(), digits.cview())
                                                   << " dB, mean relative ink change " << change);
  CHECK(mnist::psnr(y.cview(), digits.cview()) < 15.0);  // measured 9.5 dB
  CHECK(change < 1.0);

  // Bad input: one-line errors naming the option.
  const auto bad = [&](const std::vector<std::int64_t>& l) { return mnist::invert_digits(unet, digits.cview(), l, o); };
  CHECK_THROWS_WITH(bad({1, 3, 7}), "--labels: 3 labels for 4 images");
  CHECK_THROWS_WITH(bad({1, 3, 7, 10}), "--labels: label 10 at index 3 is outside [0, 9]");
  CHECK_THROWS_WITH(mnist::translate_digits(unet, digits.cview(), labels, std::vector<std::int64_t>(4, 10), o),
                    "--to: expected an integer in [0, 9], got 10");
}

TEST_CASE("mnist example: invert and translate refuse bad input files with one line", "[examples][mnist]") {
  const fs::path root = fs::path(DDPM_TEST_TMP_DIR) / "examples_mnist_edit";
  fs::remove_all(root);
  fs::create_directories(root);
  const auto digits = root / "digits.idx", small = root / "small.idx", three = root / "three.idx",
             bad_label = root / "bad_label.idx", two = root / "two.idx";
  ddpm::io::write_idx(digits, {2, 28, 28}, std::vector<std::uint8_t>(2 * 784, 0));
  ddpm::io::write_idx(small, {2, 3, 3}, std::vector<std::uint8_t>(18, 0));
  ddpm::io::write_idx(three, {3}, {1, 2, 3});
  ddpm::io::write_idx(bad_label, {2}, {4, 12});
  ddpm::io::write_idx(two, {2}, {4, 5});
  const auto run = [](int (*cmd)(int, char**), std::vector<std::string> args) {
    args.insert(args.begin(), "mnist_diffusion");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return cmd(static_cast<int>(argv.size()), argv.data());
  };
  const std::string model = (fs::path(DDPM_SOURCE_DIR) / "examples" / "models" / "mnist_cond").string();
  const auto expect = [&](int (*cmd)(int, char**), const fs::path& input, const fs::path& labels,
                          std::vector<std::string> extra, const std::string& message) {
    std::vector<std::string> args{"--input", input.string(), "--labels", labels.string(), "--model", model,
                                  "--out", (root / "out.idx").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    INFO(message);
    CHECK_THROWS_WITH(run(cmd, args), Catch::Contains(message));
  };
  for (auto cmd : {mnist::cmd_invert, mnist::cmd_translate}) {
    expect(cmd, small, two, {}, "--input: expected 28x28 images, got 3x3 (" + small.string() + ")");
    expect(cmd, digits, three, {}, "--labels: 3 labels in " + three.string() + " for 2 images in " + digits.string());
    expect(cmd, digits, bad_label, {}, bad_label.string() + ": label 12 at index 1 is outside [0, 10)");
    expect(cmd, root / "missing.idx", two, {}, "missing.idx: file not found");
    expect(cmd, digits, two, {"--steps", "0"}, "--steps: expected an integer in [1, 1000], got 0");
    expect(cmd, digits, two, {"--png", "pairs.jpg"}, "--png: expected a .png file name, got 'pairs.jpg'");
    expect(cmd, digits, two, {"--guidance", "-1"}, "--guidance: expected a finite number in [0, 100], got -1");
  }
  expect(mnist::cmd_translate, digits, two, {"--to", "10"}, "--to: expected an integer in [0, 9], got 10");
  expect(mnist::cmd_translate, digits, two, {"--to", "-1"}, "--to: expected an integer in [0, 9], got -1");
  CHECK_FALSE(fs::exists(root / "out.idx"));  // nothing written
  // The good files run: two blank digits, 2 steps.
  CHECK(run(mnist::cmd_translate, {"--input", digits.string(), "--labels", two.string(), "--model", model, "--to", "1",
                                   "--steps", "2", "--out", (root / "out.idx").string(), "--png",
                                   (root / "pairs.png").string()}) == 0);
  CHECK(ddpm::io::read_idx(root / "out.idx").dims == std::vector<index_t>{2, 28, 28});
  CHECK(fs::exists(root / "pairs.png"));
}
