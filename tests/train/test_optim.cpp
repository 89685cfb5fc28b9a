// Adam/AdamW, EMA, learning-rate schedule, gradient clipping and the loss,
// each against closed-form values.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "ddpm/train/adam.hpp"
#include "ddpm/train/ema.hpp"
#include "ddpm/train/grad_clip.hpp"
#include "ddpm/train/loss.hpp"
#include "ddpm/train/lr_schedule.hpp"

using namespace ddpm;
using namespace ddpm::train;

TEST_CASE("Adam: the first step moves each weight by lr * g / (|g| + eps)", "[adam]") {
  // With bias correction, m_hat = g and v_hat = g^2 after one step.
  std::vector<double> p{1.0, -2.0, 0.5}, g{0.3, -4.0, 1e-9};
  Adam<double> opt(3, {1e-2, 0.9, 0.999, 1e-8});
  const auto p0 = p;
  opt.step(p, g);
  for (int i = 0; i < 3; ++i) CHECK(p[i] == Approx(p0[i] - 1e-2 * g[i] / (std::abs(g[i]) + 1e-8)).epsilon(1e-12));
}

TEST_CASE("Adam: two steps against the recurrence written out", "[adam]") {
  const double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  std::vector<double> p{2.0};
  Adam<double> opt(1, {lr, b1, b2, eps});
  const double g1 = 0.5, g2 = -1.5;
  std::vector<double> g{g1};
  opt.step(p, g);
  g[0] = g2;
  opt.step(p, g);
  const double m1 = (1 - b1) * g1, v1 = (1 - b2) * g1 * g1;
  const double p1 = 2.0 - lr * (m1 / (1 - b1)) / (std::sqrt(v1 / (1 - b2)) + eps);
  const double m2 = b1 * m1 + (1 - b1) * g2, v2 = b2 * v1 + (1 - b2) * g2 * g2;
  const double p2 = p1 - lr * (m2 / (1 - b1 * b1)) / (std::sqrt(v2 / (1 - b2 * b2)) + eps);
  CHECK(p[0] == Approx(p2).epsilon(1e-12));
  CHECK(opt.step_count() == 2);
}

TEST_CASE("AdamW decays weights multiplicatively; Adam adds L2 to the gradient", "[adam]") {
  std::vector<double> p{1.0}, zero{0.0};
  Adam<double> adamw(1, AdamConfig::adamw(0.1, 0.5));
  adamw.step(p, zero);
  CHECK(p[0] == Approx(1.0 * (1 - 0.1 * 0.5)).epsilon(1e-12));  // m = 0: only the decay acts
  std::vector<double> q{1.0};
  Adam<double> adam(1, {0.1, 0.9, 0.999, 1e-8, 0.5, false});
  adam.step(q, zero);  // g = 0.5 * 1: first step moves by lr * sign
  CHECK(q[0] == Approx(1.0 - 0.1).epsilon(1e-7));
}

TEST_CASE("Adam minimises a quadratic", "[adam]") {
  std::vector<float> p{3.0f, -2.0f}, g(2);
  Adam<float> opt(2, {0.05});
  for (int i = 0; i < 2000; ++i) {
    g[0] = 2 * (p[0] - 1), g[1] = 2 * (p[1] + 0.5f);
    opt.step(p, g);
  }
  CHECK(p[0] == Approx(1.0f).margin(1e-3));
  CHECK(p[1] == Approx(-0.5f).margin(1e-3));
}

TEST_CASE("Adam rejects bad settings and mismatched buffers", "[adam][errors]") {
  CHECK_THROWS_WITH((Adam<float>(1, {-1.0})), Catch::Contains("lr"));
  CHECK_THROWS_WITH((Adam<float>(1, {1e-3, 1.0})), Catch::Contains("beta1"));
  CHECK_THROWS_WITH((Adam<float>(1, {1e-3, 0.9, 1.5})), Catch::Contains("beta2"));
  CHECK_THROWS_WITH((Adam<float>(1, {1e-3, 0.9, 0.999, 0.0})), Catch::Contains("eps"));
  Adam<float> opt(2, {});
  std::vector<float> p(3), g(3);
  CHECK_THROWS_WITH(opt.step(p, g), Catch::Contains("moments"));
}

TEST_CASE("EMA follows the warm-up decay and converges to constant weights", "[ema]") {
  std::vector<double> w{0.0};
  EMA<double> ema(w, 0.999);
  w[0] = 1.0;
  ema.update(w);  // d = min(0.999, 1/10) = 0.1
  CHECK(ema.weights()[0] == Approx(0.9).epsilon(1e-12));
  ema.update(w);  // d = 2/11
  CHECK(ema.weights()[0] == Approx(0.9 + (1 - 2.0 / 11) * 0.1).epsilon(1e-12));
  EMA<double> plain(std::vector<double>{0.0}, 0.5, false);
  plain.update(w);
  CHECK(plain.weights()[0] == 0.5);
  CHECK_THROWS_AS(EMA<double>(w, 1.5), Error);
}

TEST_CASE("learning rate: linear warm-up then cosine to min_lr", "[lr]") {
  LrSchedule s{1.0, 10, 110, 0.1};
  s.validate();
  CHECK(s(0) == Approx(0.1));
  CHECK(s(9) == Approx(1.0));
  CHECK(s(10) == Approx(1.0));
  CHECK(s(60) == Approx(0.1 + 0.45));  // halfway: cos = 0
  CHECK(s(110) == Approx(0.1));
  CHECK(s(500) == Approx(0.1));
  CHECK_THROWS_AS((LrSchedule{1.0, 10, 5}.validate()), Error);
  CHECK_THROWS_AS((LrSchedule{1.0, 0, 0, 2.0}.validate()), Error);
}

TEST_CASE("gradient clipping by global norm", "[clip]") {
  std::vector<float> g{3.0f, 4.0f};
  CHECK(clip_grad_norm<float>(g, 10.0) == Approx(5.0));
  CHECK(g[0] == 3.0f);
  CHECK(clip_grad_norm<float>(g, 1.0) == Approx(5.0));
  CHECK(std::hypot(g[0], g[1]) == Approx(1.0).epsilon(1e-5));
  std::vector<float> bad{1.0f, NAN};
  CHECK(std::isnan(clip_grad_norm<float>(bad, 1.0)));
}

TEST_CASE("weighted MSE and its gradient", "[loss]") {
  Tensor<double> pred({2, 3}), target({2, 3}), d({2, 3});
  for (index_t i = 0; i < 6; ++i) pred[i] = 0.1 * static_cast<double>(i), target[i] = 0.05 * static_cast<double>(i * i);
  std::vector<double> w{0.5, 2.0};
  const double loss = weighted_mse<double>(pred, target, w, d);
  double expect = 0;
  for (index_t i = 0; i < 2; ++i) {
    double s = 0;
    for (index_t j = 0; j < 3; ++j) s += std::pow(pred[i * 3 + j] - target[i * 3 + j], 2);
    expect += w[static_cast<std::size_t>(i)] * s / 3;
  }
  CHECK(loss == Approx(expect / 2).epsilon(1e-14));
  // Central differences.
  for (index_t k = 0; k < 6; ++k) {
    Tensor<double> scratch({2, 3});
    const double h = 1e-6, x = pred[k];
    pred[k] = x + h;
    const double lp = weighted_mse<double>(pred, target, w, scratch);
    pred[k] = x - h;
    const double lm = weighted_mse<double>(pred, target, w, scratch);
    pred[k] = x;
    CHECK(d[k] == Approx((lp - lm) / (2 * h)).epsilon(1e-7));
  }
  CHECK_THROWS_AS(weighted_mse<double>(pred, Tensor<double>({3, 2}), {}, d), Error);
}

TEST_CASE("min-SNR-gamma weights", "[loss]") {
  CHECK(min_snr_weight(10.0, 5.0, PredictionType::epsilon) == Approx(0.5));
  CHECK(min_snr_weight(1.0, 5.0, PredictionType::epsilon) == Approx(1.0));
  CHECK(min_snr_weight(10.0, 5.0, PredictionType::v_prediction) == Approx(5.0 / 11.0));
  CHECK(min_snr_weight(2.0, 5.0, PredictionType::sample) == Approx(2.0));
  CHECK(min_snr_weight(2.0, 0.0, PredictionType::sample) == 1.0);
  CHECK_THROWS_WITH(min_snr_weight(0.0, 5.0, PredictionType::epsilon), Catch::Contains("v_prediction"));
}
