// DDIM inversion (sampling/inversion.hpp) and translation by inversion
// (sampling/translation.hpp), checked against closed forms: for Gaussian data
// N(mu, s^2 I) the exact noise prediction is
//   eps(x, t) = sqrt(1 - abar_t) (x - sqrt(abar_t) mu) / (abar_t s^2 + 1 - abar_t),
// and the probability-flow ODE keeps the standardised value z = (x_0 - mu) / s:
//   x_t = sqrt(abar_t) mu + sqrt(abar_t s^2 + 1 - abar_t) z.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "ddpm/core/random.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/sampling/ddim.hpp"
#include "ddpm/sampling/ddim_inverse.hpp"
#include "ddpm/sampling/inversion.hpp"
#include "ddpm/sampling/translation.hpp"

using namespace ddpm;

namespace {

struct Gaussian {
  double mu = 0, s = 1;
  // The exact eps of N(mu, s^2) at level abar.
  double eps(double x, double abar) const {
    return std::sqrt(1 - abar) * (x - std::sqrt(abar) * mu) / (abar * s * s + 1 - abar);
  }
  // x_t on the ODE path of the point with standardised value z.
  double on_path(double z, double abar) const { return std::sqrt(abar) * mu + std::sqrt(abar * s * s + 1 - abar) * z; }
  double standardised(double x, double abar) const {
    return (x - std::sqrt(abar) * mu) / std::sqrt(abar * s * s + 1 - abar);
  }
};

// (x, t) -> exact eps of one Gaussian; counts its calls.
struct GaussianModel {
  const NoiseSchedule<double>* schedule;
  Gaussian g;
  index_t calls = 0;
  Tensor<double> out;
  ConstTensorView<double> operator()(ConstTensorView<double> x, double t) {
    ++calls;
    const double abar = schedule->alpha_cumprod(static_cast<index_t>(t));
    out.resize(x.shape());
    for (index_t i = 0; i < x.numel(); ++i) out[i] = g.eps(x[i], abar);
    return out.cview();
  }
};

// (x, t, labels) -> exact eps of the Gaussian of each row's label (a LabelModel).
struct ClassGaussians {
  const NoiseSchedule<double>* schedule;
  std::vector<Gaussian> classes;
  Tensor<double> out;
  ConstTensorView<double> operator()(ConstTensorView<double> x, double t, std::span<const std::int64_t> labels) {
    const double abar = schedule->alpha_cumprod(static_cast<index_t>(t));
    out.resize(x.shape());
    const index_t per = x.numel() / x.dim(0);
    for (index_t i = 0; i < x.numel(); ++i)
      out[i] = classes[static_cast<std::size_t>(labels[static_cast<std::size_t>(i / per)])].eps(x[i], abar);
    return out.cview();
  }
};

Tensor<double> gaussian_data(index_t rows, index_t per, double mu, double s, std::uint64_t seed) {
  Tensor<double> x({rows, per});
  Rng rng(seed);
  rng.fill_normal(x.span(), mu, s);
  return x;
}

double rms(ConstTensorView<double> a, ConstTensorView<double> b) {
  double sq = 0;
  for (index_t i = 0; i < a.numel(); ++i) sq += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(sq / static_cast<double>(a.numel()));
}

// The round-trip RMS error, invert then regenerate, with `steps` steps.
double round_trip_error(const DDIMInversionConfig& c, ConstTensorView<double> x0, double s, index_t steps,
                        index_t* calls = nullptr) {
  const NoiseSchedule<double> schedule(c.ddim.schedule);
  GaussianModel model{&schedule, {0.0, s}, 0, {}};
  const auto z = ddim_invert(model, x0, steps, c);
  if (calls) *calls = model.calls;
  const auto back = ddim_regenerate(model, z.cview(), steps, c);
  return rms(back.cview(), x0);
}

}  // namespace

TEST_CASE("DDIM inversion mirrors the DDIM timesteps", "[sampling][inversion]") {
  for (const auto spacing : {TimestepSpacing::leading, TimestepSpacing::trailing})
    for (const index_t offset : {0, 1})
      for (const index_t n : {1, 7, 30, 50}) {
        DDIMConfig ddim = unclipped_ddim_config();
        ddim.timesteps = {.spacing = spacing, .steps_offset = offset};
        DDIMSampler<double> forward(ddim);
        DDIMInverseSampler<double> inverse(mirrored_inverse_config(ddim));
        forward.set_timesteps(n);
        inverse.set_timesteps(n);
        std::vector<double> f(forward.timesteps().begin(), forward.timesteps().end());
        std::vector<double> b(inverse.timesteps().rbegin(), inverse.timesteps().rend());
        CHECK(f == b);
      }
}

TEST_CASE("DDIM inversion of Gaussian data: regenerating returns x0, the error falls with the steps",
          "[sampling][inversion]") {
  const double s = 0.5;
  const auto x0 = gaussian_data(4, 512, 0.0, s, 1);
  const DDIMInversionConfig c;
  index_t calls = 0;
  const double e10 = round_trip_error(c, x0.cview(), s, 10, &calls);
  CHECK(calls == 10);  // one model call per inverse step
  const double e50 = round_trip_error(c, x0.cview(), s, 50);
  const double e250 = round_trip_error(c, x0.cview(), s, 250);
  INFO("RMS round-trip error (data std " << s << "): 10 steps " << e10 << ", 50 steps " << e50 << ", 250 steps "
                                         << e250);
  // First order in the step size: 5x the steps, 5x less error (measured:
  // 10 steps 0.136, 50 steps 0.0267, 250 steps 0.0053, i.e. 5% of the data's
  // spread at 50 steps).
  CHECK(e50 < 0.03);
  CHECK(e10 / e50 > 4.0);
  CHECK(e50 / e250 > 4.0);
  CHECK(e10 / e50 < 6.5);
}

TEST_CASE("DDIM inversion with fixed-point refinement is the exact inverse of the DDIM run", "[sampling][inversion]") {
  const double s = 0.5;
  const auto x0 = gaussian_data(2, 256, 0.0, s, 2);
  DDIMInversionConfig c;
  c.fixed_point_iterations = 30;
  // Every spacing and end condition: an error in the pairing of the levels
  // would show here as an O(1) error, not as rounding.
  for (const auto spacing : {TimestepSpacing::leading, TimestepSpacing::trailing})
    for (const bool alpha_to_one : {true, false}) {
      c.ddim.timesteps = {.spacing = spacing, .steps_offset = spacing == TimestepSpacing::leading ? 1 : 0};
      c.ddim.set_alpha_to_one = alpha_to_one;
      index_t calls = 0;
      const double e = round_trip_error(c, x0.cview(), s, 20, &calls);
      INFO("spacing " << (spacing == TimestepSpacing::leading ? "leading" : "trailing") << ", set_alpha_to_one "
                      << alpha_to_one << ": RMS round-trip error " << e);
      CHECK(calls == 20 * 31);
      CHECK(e < 1e-10);
    }
  // Each iteration shrinks the error ~5x (measured at 20 steps: 0.064, 0.013, 0.0025).
  DDIMInversionConfig plain, one, two;
  one.fixed_point_iterations = 1;
  two.fixed_point_iterations = 2;
  const double e0 = round_trip_error(plain, x0.cview(), s, 20), e1 = round_trip_error(one, x0.cview(), s, 20),
               e2 = round_trip_error(two, x0.cview(), s, 20);
  INFO("20 steps, RMS round-trip error with 0, 1, 2 fixed-point iterations: " << e0 << ", " << e1 << ", " << e2);
  CHECK(e1 < 0.3 * e0);
  CHECK(e2 < 0.3 * e1);
}

TEST_CASE("DDIM inversion of N(0, s^2) data is N(0, 1) noise on the ODE path", "[sampling][inversion]") {
  const double s = 0.5;
  const auto x0 = gaussian_data(8, 1024, 0.0, s, 3);
  const DDIMInversionConfig c;
  const NoiseSchedule<double> schedule(c.ddim.schedule);
  GaussianModel model{&schedule, {0.0, s}, 0, {}};
  const auto z = ddim_invert(model, x0.cview(), 50, c);
  // The last level: t_0 = 980 for 50 leading steps of 1000.
  const double abar = schedule.alpha_cumprod(980);
  double mean = 0, var = 0, path_err = 0;
  for (index_t i = 0; i < z.numel(); ++i) mean += z[i];
  mean /= static_cast<double>(z.numel());
  for (index_t i = 0; i < z.numel(); ++i) {
    var += (z[i] - mean) * (z[i] - mean);
    const double expect = Gaussian{0.0, s}.on_path(x0[i] / s, abar);
    path_err = std::max(path_err, std::abs(z[i] - expect));
  }
  var /= static_cast<double>(z.numel() - 1);
  INFO("mean " << mean << ", variance " << var << ", max distance to the ODE path " << path_err);
  CHECK(std::abs(mean) < 0.05);
  CHECK(var == Approx(1.0).margin(0.05));
  // Each element lands where the exact ODE takes it, up to the discretisation
  // (z ~ 2 x0 here, so a relative 1%).
  CHECK(path_err < 0.03);
}

TEST_CASE("DDIM inversion with strength < 1 stops part way on the ODE path and regenerates from there",
          "[sampling][inversion]") {
  const double s = 0.5;
  const auto x0 = gaussian_data(2, 256, 0.0, s, 3);
  const index_t n = 50;
  DDIMInversionConfig whole, part;
  part.strength = 0.41;  // floor(0.41 * 50) = 20 steps each way
  const NoiseSchedule<double> schedule(part.ddim.schedule);
  GaussianModel model{&schedule, {0.0, s}, 0, {}};
  // The whole inversion's sample after its 20th step is the partial result, bit for bit.
  Tensor<double> after_20;
  (void)ddim_invert(model, x0.cview(), n, whole, [&](index_t k, index_t, double, ConstTensorView<double> x) {
    if (k == 19) after_20 = Tensor<double>::copy_of(x);
  });
  model.calls = 0;
  const auto z = ddim_invert(model, x0.cview(), n, part);
  CHECK(model.calls == 20);
  REQUIRE(z.shape() == after_20.shape());
  CHECK(std::equal(z.begin(), z.end(), after_20.begin()));
  // It lies at level t_{n-m} of the forward run, on x0's ODE path (z keeps x0 / s).
  DDIMSampler<double> forward(part.ddim);
  forward.set_timesteps(n);
  const double abar = schedule.alpha_cumprod(static_cast<index_t>(forward.timesteps()[n - 20]));
  double err = 0;
  for (index_t i = 0; i < x0.numel(); ++i)
    err = std::max(err, std::abs(Gaussian{0.0, s}.standardised(z[i], abar) - x0[i] / s));
  CHECK(err < 0.05);
  CHECK(abar < 0.9);  // and it did move toward noise
  // Regeneration runs the forward steps 30..49 and comes back.
  model.calls = 0;
  const auto back = ddim_regenerate(model, z.cview(), n, part);
  CHECK(model.calls == 20);
  CHECK(rms(back.cview(), x0.cview()) < 0.03);  // measured 0.023 (the whole way: 0.027)
}

TEST_CASE("DDIM inversion refuses what has no inverse", "[sampling][inversion]") {
  const NoiseSchedule<double> schedule;
  GaussianModel model{&schedule, {0.0, 1.0}, 0, {}};
  const Tensor<double> x({1, 4}, 0.0);
  DDIMInversionConfig c;
  c.ddim.eta = 1.0;
  CHECK_THROWS_WITH(ddim_invert(model, x.cview(), 10, c), Catch::Contains("eta must be 0"));
  c = {};
  c.ddim.timesteps.spacing = TimestepSpacing::linspace;
  CHECK_THROWS_WITH(ddim_invert(model, x.cview(), 10, c), Catch::Contains("leading or trailing"));
  c = {};
  c.ddim.clipping.thresholding = true;
  CHECK_THROWS_WITH(ddim_regenerate(model, x.cview(), 10, c), Catch::Contains("thresholding"));
  c = {};
  CHECK_THROWS_WITH(ddim_invert(model, x.cview(), 0, c), Catch::Contains("num_inference_steps"));
  c.strength = 0;
  CHECK_THROWS_WITH(ddim_invert(model, x.cview(), 10, c), "DDIM inversion: strength must be in (0, 1], got 0");
  c.strength = 1.5;
  CHECK_THROWS_WITH(ddim_regenerate(model, x.cview(), 10, c), "DDIM inversion: strength must be in (0, 1], got 1.5");
  c.strength = 0.25;
  CHECK_THROWS_WITH(ddim_invert(model, x.cview(), 3, c),
                    "DDIM inversion: strength 0.25 of 3 steps runs no step; expected strength * steps >= 1");
}

TEST_CASE("translation by inversion between two Gaussians is the affine quantile map", "[sampling][translation]") {
  const NoiseSchedule<double> schedule;
  // Class 0: N(-0.5, 0.5^2); class 1: N(0.6, 0.8^2); class 2 (the null label): N(0, 1).
  const std::vector<Gaussian> classes{{-0.5, 0.5}, {0.6, 0.8}, {0.0, 1.0}};
  ClassGaussians model{&schedule, classes, {}};
  const index_t rows = 6, per = 200;
  const auto x = gaussian_data(rows, per, classes[0].mu, classes[0].s, 4);
  const std::vector<std::int64_t> from(rows, 0), to(rows, 1);
  const double abar = schedule.alpha_cumprod(980);  // the latent's level, 50 leading steps

  // The bridge of the exact ODEs: A's path up to the latent, B's path down.
  const auto bridge = [&](const Gaussian& a, const Gaussian& b, double v) {
    return b.mu + b.s * b.standardised(a.on_path((v - a.mu) / a.s, abar), abar);
  };
  // RMS distance of the translation y of x to the exact bridge a -> b; in
  // `affine`, RMS distance to the affine map.
  const auto bridge_error = [&](ConstTensorView<double> y, const Gaussian& a, const Gaussian& b, double* affine) {
    double e = 0, f = 0;
    for (index_t i = 0; i < y.numel(); ++i) {
      e += std::pow(y[i] - bridge(a, b, x[i]), 2);
      f += std::pow(y[i] - (b.mu + b.s / a.s * (x[i] - a.mu)), 2);
    }
    *affine = std::sqrt(f / static_cast<double>(y.numel()));
    return std::sqrt(e / static_cast<double>(y.numel()));
  };

  double affine50 = 0, affine200 = 0, unused = 0;
  const auto y50 = ddib_translate<double>(model, x.cview(), from, to, 50);
  const auto y200 = ddib_translate<double>(model, x.cview(), from, to, 200);
  const double e50 = bridge_error(y50.cview(), classes[0], classes[1], &affine50);
  const double e200 = bridge_error(y200.cview(), classes[0], classes[1], &affine200);
  INFO("RMS distance to the exact bridge: 50 steps " << e50 << ", 200 steps " << e200
                                                     << "; to the affine map: " << affine50 << ", " << affine200);
  // Measured: 0.051 at 50 steps (6% of B's spread), 0.012 at 200 (first
  // order); to the affine map 0.056 and 0.018 (the rest: the latent's level
  // keeps sqrt(abar_980) = 0.0064 of the mean).
  CHECK(e50 < 0.065);
  CHECK(e50 / e200 > 3.5);
  CHECK(affine50 < 0.07);
  CHECK(affine200 < 0.025);

  // Round trip A -> B -> A comes back.
  const auto back = ddib_translate<double>(model, y50.cview(), to, from, 50);
  CHECK(rms(back.cview(), x.cview()) < 0.045);  // measured 0.034

  // Guidance scale 0 while inverting: the latent comes from the null class's
  // ODE, so the map is the bridge null -> B (distinguishable from A -> B).
  TranslationConfig null_inversion;
  null_inversion.inversion_guidance = 0.0;
  null_inversion.null_label = 2;
  const auto yn = ddib_translate<double>(model, x.cview(), from, to, 50, null_inversion);
  const double en = bridge_error(yn.cview(), classes[2], classes[1], &unused);
  const double en_wrong = bridge_error(yn.cview(), classes[0], classes[1], &unused);
  INFO("null-class inversion: to the null -> B bridge " << en << ", to the A -> B bridge " << en_wrong);
  CHECK(en < 0.02);
  CHECK(en_wrong > 0.2);

  // A scale other than 1 needs the null label; labels must match the batch.
  TranslationConfig no_null;
  no_null.generation_guidance = 3.0;
  CHECK_THROWS_WITH(ddib_translate<double>(model, x.cview(), from, to, 10, no_null), Catch::Contains("null label"));
  CHECK_THROWS_WITH(ddib_translate<double>(model, x.cview(), std::span(from).first(2), to, 10),
                    Catch::Contains("2 source and 6 target labels for a batch of 6"));
}
