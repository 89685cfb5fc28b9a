// Anomaly detection by reconstruction (sampling/anomaly.hpp), against
// closed-form denoisers: for data that is a single point mu the exact
// epsilon-prediction is eps(x_t, t) = (x_t - sqrt(abar_t) mu) / sqrt(1 -
// abar_t), so every reconstruction is mu and the map of x_0 is exactly
// e(x_0 - mu); for Gaussian data N(mu, s^2 I) it is
// sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar), and the
// reconstructions depend on the noise drawn. The streams, the averaging over
// draws, batch and thread-count independence and the option checks.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "ddpm/sampling/anomaly.hpp"
#include "ddpm/sampling/ddpm.hpp"
#include "support/tiny_unet.hpp"

using namespace ddpm;

namespace {

// The exact epsilon-prediction for data N(mu, s^2 I) (s = 0: the point mu).
struct GaussianDenoiser {
  NoiseSchedule<double> schedule{ScheduleConfig{}};
  double mu = 0.2, s = 0.0;
  Tensor<double> operator()(ConstTensorView<double> x, double t) const {
    const double abar = schedule.alpha_cumprod(static_cast<index_t>(t));
    const double a = std::sqrt(abar), b = std::sqrt(1 - abar);
    Tensor<double> eps(x.shape());
    for (index_t i = 0; i < x.numel(); ++i) eps[i] = b * (x[i] - a * mu) / (abar * s * s + (1 - abar));
    return eps;
  }
};

// n images [n, c, 4, 4], all mu, plus `delta` on the 2x2 patch at the top left of channel 0 of images >= first_bad.
Tensor<double> point_images(index_t n, index_t c, double mu, index_t first_bad, double delta) {
  Tensor<double> x({n, c, 4, 4});
  for (index_t i = 0; i < x.numel(); ++i) x[i] = mu;
  for (index_t i = first_bad; i < n; ++i)
    for (index_t p : {0, 1, 4, 5}) x[i * c * 16 + p] += delta;
  return x;
}

bool bit_equal(ConstTensorView<double> a, ConstTensorView<double> b) {
  if (!(a.shape() == b.shape())) return false;
  for (index_t i = 0; i < a.numel(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

std::string message_of(const auto& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("anomaly: a point-mass denoiser reconstructs the point, so the map is the exact error", "[sampling][anomaly]") {
  const GaussianDenoiser model{.mu = 0.2, .s = 0.0};
  // Images 0, 1 are the data point; 2, 3 carry +0.5 on 4 of 2 x 16 values (channel 0 only).
  const Tensor<double> x = point_images(4, 2, 0.2, 2, 0.5);
  for (const char* sampler : {"ddim", "ddpm"}) {
    AnomalyOptions o;
    o.sampler = sampler == std::string("ddim") ? SamplerConfig(DDIMConfig{}) : SamplerConfig(DDPMConfig{});
    o.draws = 2;
    o.score = AnomalyScore::mean;
    const auto r = anomaly_maps<double>(model, x.cview(), o);
    INFO(sampler);
    REQUIRE(r.maps.shape() == Shape{4, 1, 4, 4});
    CHECK(r.t == 250);
    for (index_t i = 0; i < 4; ++i)
      for (index_t p = 0; p < 16; ++p) {
        const bool bad = i >= 2 && (p == 0 || p == 1 || p == 4 || p == 5);
        // squared error 0.25 in one of two channels: 0.125 averaged over channels.
        CHECK(r.maps[i * 16 + p] == Approx(bad ? 0.125 : 0.0).margin(1e-12));
        CHECK(r.reconstruction[i * 32 + p] == Approx(0.2).margin(1e-12));
      }
    // mean: 4 * 0.125 / 16; in distribution 0 (to rounding).
    CHECK(r.scores[0] == Approx(0).margin(1e-12));
    CHECK(r.scores[1] == Approx(0).margin(1e-12));
    CHECK(r.scores[2] == Approx(0.03125).epsilon(1e-9));
    CHECK(r.scores[3] == Approx(0.03125).epsilon(1e-9));
  }
  // Absolute error and the other statistics on the same images.
  AnomalyOptions o;
  o.error = AnomalyError::absolute;
  o.score = AnomalyScore::top_k_mean;
  o.top_k = 8;  // 4 pixels at 0.25, 4 at 0
  const auto r = anomaly_maps<double>(model, x.cview(), o);
  CHECK(r.maps[2 * 16] == Approx(0.25).epsilon(1e-9));
  CHECK(r.scores[2] == Approx(0.125).epsilon(1e-9));
  CHECK(r.scores[0] == Approx(0).margin(1e-12));
  o.score = AnomalyScore::max;
  CHECK(anomaly_maps<double>(model, x.cview(), o).scores[3] == Approx(0.25).epsilon(1e-9));
}

TEST_CASE("anomaly: Gaussian data, the maps match the probability-flow map and separate the outliers",
          "[sampling][anomaly]") {
  // Data N(mu, s^2). DDIM (eta 0) integrates the probability-flow ODE, which
  // for Gaussian data is the linear map x_t -> mu + s (x_t - a mu) / r with
  // a = sqrt(abar_t), b = sqrt(1 - abar_t), r = sqrt(a^2 s^2 + b^2). With x_t
  // = a x_0 + b eps the error is x_0 - xhat_0 = k (x_0 - mu) - (s b / r) eps,
  // k = 1 - s a / r, so over many draws the map tends to
  //   E[e^2] = k^2 (x_0 - mu)^2 + s^2 b^2 / r^2.
  // In-distribution images are draws from the data; the outliers have a 2x2
  // patch moved by +1.2 (4 standard deviations).
  const GaussianDenoiser model{.mu = 0.2, .s = 0.3};
  Rng rng(11);
  Tensor<double> x({8, 1, 4, 4});
  for (index_t i = 0; i < x.numel(); ++i) x[i] = 0.2 + 0.3 * rng.normal();
  for (index_t i = 4; i < 8; ++i)
    for (index_t p : {5, 6, 9, 10}) x[i * 16 + p] += 1.2;
  AnomalyOptions o;
  o.sampler = DDIMConfig{.clipping = {.clip_sample = false}};
  o.draws = 200;
  o.score = AnomalyScore::top_k_mean;
  o.top_k = 4;
  const auto r = anomaly_maps<double>(model, x.cview(), o);
  const double abar = model.schedule.alpha_cumprod(250), a = std::sqrt(abar), b = std::sqrt(1 - abar);
  const double rr = std::sqrt(a * a * 0.09 + b * b), k = 1 - 0.3 * a / rr, noise_term = 0.09 * b * b / (rr * rr);
  double worst = 0, sum = 0, sum_expected = 0;
  for (index_t i = 0; i < x.numel(); ++i) {
    const double expected = k * k * (x[i] - 0.2) * (x[i] - 0.2) + noise_term;
    worst = std::max(worst, std::abs(r.maps[i] - expected) / expected);
    sum += r.maps[i], sum_expected += expected;
  }
  // Monte Carlo over 200 draws (relative sd of a pixel ~0.1) and 25 DDIM steps for the ODE.
  CHECK(worst < 0.35);
  CHECK(sum == Approx(sum_expected).epsilon(0.05));
  // An outlier's top-4 pixels are its patch, each expected above k^2 (1.2 - 2.5 s)^2 + noise (0.18) for
  // a data deviation above -2.5 s; measured: outliers >= 0.55, in-distribution images <= 0.26.
  double worst_normal = 0, best_outlier = 1e9;
  for (index_t i = 0; i < 4; ++i) worst_normal = std::max(worst_normal, r.scores[static_cast<std::size_t>(i)]);
  for (index_t i = 4; i < 8; ++i) best_outlier = std::min(best_outlier, r.scores[static_cast<std::size_t>(i)]);
  CHECK(best_outlier > k * k * 0.45 * 0.45 + noise_term);
  CHECK(best_outlier > 1.5 * worst_normal);
}

TEST_CASE("anomaly: the map is the mean over draws of each draw's error, each draw from its own stream",
          "[sampling][anomaly]") {
  // An independent re-run of the contract: draw d of image i noises with
  // Rng(seed, anomaly_stream(i, d)) and sdedit continues on that stream.
  const GaussianDenoiser model{.mu = 0.1, .s = 0.4};
  Rng rng(5);
  Tensor<double> x({3, 2, 4, 4});
  for (index_t i = 0; i < x.numel(); ++i) x[i] = 0.1 + 0.6 * rng.normal();
  AnomalyOptions o;
  o.sampler = DDPMConfig{};  // stochastic: the streams matter after the first step too
  o.steps = 50;
  o.t_start = 300;
  o.draws = 3;
  o.seed = 42;
  o.first_index = 7;
  const auto r = anomaly_maps<double>(model, x.cview(), o);
  REQUIRE(r.t == 300);

  const NoiseSchedule<double> schedule{ScheduleConfig{}};
  const double sigma = std::sqrt((1 - schedule.alpha_cumprod(300)) / schedule.alpha_cumprod(300));
  std::vector<double> map(3 * 16, 0.0);
  for (index_t d = 0; d < 3; ++d) {
    std::vector<Rng> streams;
    Tensor<double> y(x.shape());
    for (index_t i = 0; i < 3; ++i) {
      streams.emplace_back(42, anomaly_stream(7 + i, d));
      for (index_t j = 0; j < 32; ++j) y[i * 32 + j] = x[i * 32 + j] + sigma * streams.back().normal();
    }
    const NoiseSource<double> noise(NoiseSource<double>::Fill([&](TensorView<double> out) {
      for (index_t i = 0; i < 3; ++i) streams[static_cast<std::size_t>(i)].fill_normal(out.span().subspan(i * 32, 32));
    }));
    DDPMSampler<double> s(DDPMConfig{});
    s.set_timesteps(50);
    const auto rec = sdedit(s, model, y.cview(), sigma, noise);
    for (index_t i = 0; i < 3; ++i)
      for (index_t c = 0; c < 2; ++c)
        for (index_t p = 0; p < 16; ++p) {
          const double e = x[i * 32 + c * 16 + p] - rec[i * 32 + c * 16 + p];
          map[static_cast<std::size_t>(i * 16 + p)] += e * e;
        }
  }
  for (index_t k = 0; k < 48; ++k) CHECK(r.maps[k] == Approx(map[static_cast<std::size_t>(k)] / 6).epsilon(1e-12));
  // The draws differ (else averaging would be pointless): one draw's map is not the mean.
  o.draws = 1;
  const auto one = anomaly_maps<double>(model, x.cview(), o);
  CHECK_FALSE(bit_equal(one.maps.cview(), r.maps.cview()));
}

TEST_CASE("anomaly: an image's map depends on the seed and its index, not on its batch", "[sampling][anomaly]") {
  const GaussianDenoiser model{.mu = 0.0, .s = 0.5};
  Rng rng(3);
  Tensor<double> x({4, 1, 4, 4});
  for (index_t i = 0; i < x.numel(); ++i) x[i] = rng.normal();
  AnomalyOptions o;
  o.sampler = DDPMConfig{};
  o.draws = 2;
  o.seed = 9;
  const auto all = anomaly_maps<double>(model, x.cview(), o);
  CHECK(bit_equal(all.maps.cview(), anomaly_maps<double>(model, x.cview(), o).maps.cview()));  // same call again
  const auto head = anomaly_maps<double>(model, x.cview().slice(0, 2), o);
  o.first_index = 2;
  const auto tail = anomaly_maps<double>(model, x.cview().slice(2, 2), o);
  CHECK(bit_equal(head.maps.cview(), all.maps.cview().slice(0, 2)));
  CHECK(bit_equal(tail.maps.cview(), all.maps.cview().slice(2, 2)));
  CHECK(tail.scores[1] == all.scores[3]);
  o.first_index = 0;
  o.seed = 10;
  CHECK_FALSE(bit_equal(anomaly_maps<double>(model, x.cview(), o).maps.cview(), all.maps.cview()));
}

TEST_CASE("anomaly: a U-Net's maps repeat bit for bit, on any thread count", "[sampling][anomaly]") {
  // anomaly_maps itself runs on the calling thread with per-image streams;
  // what threads change is the model's arithmetic, which the Cpu backend
  // splits in fixed chunks in inference, so the maps keep their bits.
  nn::UNet2DConfig c = test::tiny_unet_layout();
  c.sample_size = {8};
  nn::UNet2D<float, backend::Cpu> net(c);
  Rng rng(1, 2);
  net.init(rng);
  for (auto& v : net.parameters().values()) v += 0.05f * static_cast<float>(rng.normal());
  net.set_mode(nn::Mode::Inference);
  const auto model = [&](ConstTensorView<float> x, double t) {
    const double ts[] = {t};
    return net.forward(x, ts);
  };
  Tensor<float> x({3, 2, 8, 8});
  rng.fill_normal(x.span());
  AnomalyOptions o;
  o.sampler = DDPMConfig{};
  o.steps = 20;
  o.draws = 2;
  const int saved = backend::Cpu::num_threads();
  std::vector<Tensor<float>> maps;
  for (int threads : {1, 2, 2, 1}) {
    backend::Cpu::set_num_threads(threads);
    maps.push_back(anomaly_maps<float>(model, x.cview(), o).maps);
  }
  backend::Cpu::set_num_threads(saved);
  REQUIRE(maps[0].shape() == Shape{3, 1, 8, 8});
  bool repeat = true, nonzero = false;
  for (index_t i = 0; i < maps[0].numel(); ++i) {
    repeat &= maps[0][i] == maps[3][i] && maps[1][i] == maps[2][i];
    nonzero |= maps[0][i] > 0;
    CHECK(maps[1][i] == maps[0][i]);  // 2 threads against 1: the same bits
  }
  CHECK(repeat);
  CHECK(nonzero);
}

TEST_CASE("anomaly: the entry is the sampler timestep nearest t_start", "[sampling][anomaly]") {
  const GaussianDenoiser model{.mu = 0.2};
  const Tensor<double> x = point_images(1, 1, 0.2, 1, 0);
  AnomalyOptions o;
  o.steps = 10;  // timesteps 900, 800, ..., 0
  o.t_start = 290;
  CHECK(anomaly_maps<double>(model, x.cview(), o).t == 300);
  o.t_start = 999;
  CHECK(anomaly_maps<double>(model, x.cview(), o).t == 900);
}

TEST_CASE("anomaly_score: mean, max and top-k mean of a map", "[sampling][anomaly]") {
  const std::vector<float> m{0.5f, 2.0f, 1.0f, 0.0f, 4.0f, 0.5f};
  CHECK(anomaly_score<float>(m, AnomalyScore::mean, 1) == Approx(8.0 / 6));
  CHECK(anomaly_score<float>(m, AnomalyScore::max, 1) == 4.0);
  CHECK(anomaly_score<float>(m, AnomalyScore::top_k_mean, 1) == 4.0);
  CHECK(anomaly_score<float>(m, AnomalyScore::top_k_mean, 3) == Approx(7.0 / 3));
  CHECK(anomaly_score<float>(m, AnomalyScore::top_k_mean, 100) == Approx(8.0 / 6));  // k capped at the pixels
  CHECK(parse_anomaly_score("top-k-mean") == AnomalyScore::top_k_mean);
  CHECK(message_of([] { parse_anomaly_score("median"); }) ==
        "anomaly score: expected mean, max or top-k-mean, got 'median'");
}

TEST_CASE("anomaly: bad options are one-line errors", "[sampling][anomaly]") {
  const GaussianDenoiser model;
  const Tensor<double> x = point_images(1, 1, 0.2, 1, 0);
  const auto run = [&](auto edit) {
    AnomalyOptions o;
    edit(o);
    return message_of([&] { anomaly_maps<double>(model, x.cview(), o); });
  };
  CHECK(run([](AnomalyOptions& o) { o.t_start = 0; }) == "anomaly: t_start must be in [1, 999], got 0");
  CHECK(run([](AnomalyOptions& o) { o.t_start = 1000; }) == "anomaly: t_start must be in [1, 999], got 1000");
  CHECK(run([](AnomalyOptions& o) { o.draws = 0; }) == "anomaly: draws must be in [1, 1000], got 0");
  CHECK(run([](AnomalyOptions& o) { o.draws = 1001; }) == "anomaly: draws must be in [1, 1000], got 1001");
  CHECK(run([](AnomalyOptions& o) { o.steps = 0; }) == "anomaly: steps must be in [1, 1000], got 0");
  CHECK(run([](AnomalyOptions& o) { o.top_k = 0; }) == "anomaly: top_k must be >= 1, got 0");
  CHECK(run([](AnomalyOptions& o) { o.first_index = -1; }) == "anomaly: first_index must be >= 0, got -1");
  const Tensor<double> flat({2, 16});
  CHECK(message_of([&] { anomaly_maps<double>(model, flat.cview()); }) ==
        "anomaly: expected images [N, C, H, W], got [2, 16]");
}
