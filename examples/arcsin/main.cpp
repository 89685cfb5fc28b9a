// arcsin_inversion: can a network learn the inverse of y = sin(x)?
//
// Part 1, regression. Where sin is invertible (x in [-pi/2, pi/2]) a plain
// MLP trained on pairs (sin x, x) learns arcsin: we report its max and mean
// absolute error on a dense grid of y and plot it over the true curve.
//
// Part 2, diffusion. Over a full period (x in [-pi, pi]) every y in (-1, 1)
// has two preimages, arcsin y and +-pi - arcsin y. Regression can only
// predict their average (the conditional mean), which is neither. A
// conditional diffusion model, the library's MLPDenoiser conditioned on y,
// trained on the same pairs with the same training step as the U-Net,
// *samples* x given y: its samples fall on every branch, in proportion.
//
// Outputs (in --out): arcsin_regression.png (black: arcsin, red: the MLP),
// arcsin_diffusion.png (black: the true preimages, blue: diffusion samples,
// red: regression on the full period), and a table on stdout.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numbers>
#include <string>
#include <variant>
#include <vector>

#include <cxxopts.hpp>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/io/image.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/mlp_denoiser.hpp"
#include "ddpm/sampling/any_sampler.hpp"
#include "ddpm/sampling/loop.hpp"
#include "ddpm/train/adam.hpp"
#include "ddpm/train/loss.hpp"
#include "ddpm/train/lr_schedule.hpp"
#include "ddpm/train/trainer.hpp"
#include "../common/cli.hpp"
#include "../common/plot.hpp"
#include "../common/progress.hpp"

namespace fs = std::filesystem;
using ddpm::index_t;
using B = ddpm::backend::Cpu;
constexpr double kPi = std::numbers::pi;

namespace {

// ---------------------------------------------------------------------------
// Part 1: a plain regression MLP, y -> x: Linear, SiLU, Linear, SiLU, Linear.
class Regressor {
 public:
  explicit Regressor(int hidden)
      : params_(std::make_unique<ddpm::Parameters<float>>()), l1_(*params_, "l1", 1, hidden),
        l2_(*params_, "l2", hidden, hidden), l3_(*params_, "l3", hidden, 1) {}
  ddpm::Parameters<float>& parameters() { return *params_; }
  void init(ddpm::Rng& rng) { l1_.init(rng), l2_.init(rng), l3_.init(rng); }
  ddpm::ConstTensorView<float> forward(ddpm::ConstTensorView<float> y) {
    return l3_.forward(a2_.forward(l2_.forward(a1_.forward(l1_.forward(y)))));
  }
  void backward(ddpm::ConstTensorView<float> dx) {
    l1_.backward(a1_.backward(l2_.backward(a2_.backward(l3_.backward(dx)))));
  }

 private:
  std::unique_ptr<ddpm::Parameters<float>> params_;
  ddpm::nn::Linear<float, B> l1_, l2_, l3_;
  ddpm::nn::SiLU<float, B> a1_{"a1"}, a2_{"a2"};
};

// Trains the regressor on (sin x, x), x ~ U[lo, hi], with MSE and Adam.
void train_regressor(Regressor& net, double lo, double hi, int steps, index_t batch, std::uint64_t seed,
                     const char* label) {
  ddpm::Rng rng(seed, 1);
  net.init(rng);
  auto& p = net.parameters();
  ddpm::train::Adam<float> adam(p.numel(), {});
  const ddpm::train::LrSchedule lr{.base_lr = 3e-3, .warmup_steps = 100, .total_steps = steps, .min_lr = 3e-5};
  ddpm::Tensor<float> y({batch, 1}), x({batch, 1}), dpred({batch, 1});
  examples::Progress bar(label, steps);
  double smooth = -1;
  for (int s = 0; s < steps; ++s) {
    for (index_t i = 0; i < batch; ++i) {
      const double xi = rng.uniform(lo, hi);
      x[i] = static_cast<float>(xi);
      y[i] = static_cast<float>(std::sin(xi));
    }
    p.zero_grad();
    const auto pred = net.forward(y.cview());
    const double loss = ddpm::train::weighted_mse<float>(pred, x.cview(), {}, dpred.view());
    net.backward(dpred.cview());
    adam.step(p.values(), p.grads(), lr(s));
    smooth = smooth < 0 ? loss : 0.98 * smooth + 0.02 * loss;
    bar.update(s + 1, smooth);
  }
  bar.finish();
}

// The regressor's x for each y.
std::vector<double> predict(Regressor& net, const std::vector<double>& ys) {
  ddpm::Tensor<float> y({static_cast<index_t>(ys.size()), 1});
  for (std::size_t i = 0; i < ys.size(); ++i) y[static_cast<index_t>(i)] = static_cast<float>(ys[i]);
  const auto x = net.forward(y.cview());
  return {x.begin(), x.end()};
}

// Every x in [lo, hi] with sin x = y (y in [-1, 1]).
std::vector<double> preimages(double y, double lo, double hi) {
  std::vector<double> out;
  const double a = std::asin(y);
  for (int k = -4; k <= 4; ++k)
    for (double x : {a + 2 * kPi * k, kPi - a + 2 * kPi * k})
      if (x >= lo - 1e-12 && x <= hi + 1e-12) {
        bool dup = false;
        for (double o : out) dup |= std::abs(o - x) < 1e-9;
        if (!dup) out.push_back(x);
      }
  std::sort(out.begin(), out.end());
  return out;
}

double nearest_distance(double x, const std::vector<double>& roots) {
  double d = INFINITY;
  for (double r : roots) d = std::min(d, std::abs(x - r));
  return d;
}

// ---------------------------------------------------------------------------
// Part 2: the conditional diffusion model. Data x / scale in [-1, 1],
// condition y = sin x, the library's MLPDenoiser and training step.
using Denoiser = ddpm::nn::MLPDenoiser<float, B>;

struct DiffusionSetup {
  double scale;  // x = scale * data
  ddpm::ScheduleConfig schedule;
};

void train_diffusion(Denoiser& net, const DiffusionSetup& d, double lo, double hi, int steps, index_t batch,
                     std::uint64_t seed) {
  ddpm::Rng rng(seed, 2);
  net.init(rng);
  const ddpm::NoiseSchedule<float> schedule(d.schedule);
  ddpm::train::TrainConfig tc;
  tc.lr = {.base_lr = 2e-3, .warmup_steps = 200, .total_steps = steps, .min_lr = 2e-5};
  tc.ema_decay = 0.995;
  tc.seed = seed;
  ddpm::train::Trainer<float, Denoiser> trainer(net, schedule, tc);
  ddpm::Tensor<float> x({batch, 1}), y({batch, 1});
  examples::Progress bar("diffusion", steps);
  double smooth = -1;
  for (int s = 0; s < steps; ++s) {
    for (index_t i = 0; i < batch; ++i) {
      const double xi = rng.uniform(lo, hi);
      x[i] = static_cast<float>(xi / d.scale);
      y[i] = static_cast<float>(std::sin(xi));
    }
    const auto st = trainer.step(x.cview(), {{}, y.cview()});
    smooth = smooth < 0 ? st.loss : 0.98 * smooth + 0.02 * st.loss;
    bar.update(s + 1, smooth);
  }
  bar.finish();
  trainer.ema()->copy_to(net.parameters().values());  // sample with the averaged weights
}

// Samples one x per condition y (ys.size() samples).
std::vector<double> sample_x(Denoiser& net, const DiffusionSetup& d, const std::vector<double>& ys,
                             const std::string& sampler, index_t steps, std::uint64_t seed) {
  net.set_mode(ddpm::nn::Mode::Inference);
  const auto n = static_cast<index_t>(ys.size());
  ddpm::Tensor<float> cond({n, 1}), noise({n, 1});
  for (index_t i = 0; i < n; ++i) cond[i] = static_cast<float>(ys[static_cast<std::size_t>(i)]);
  ddpm::Rng rng(seed, 3);
  rng.fill_normal(noise.span());
  // The model callable the sampling loop wants: (x_t, t) -> predicted noise.
  const auto model = [&](ddpm::ConstTensorView<float> x, double t) {
    return net.forward(x, std::span<const double>(&t, 1), cond.cview());
  };
  auto s = ddpm::make_sampler<float>(examples::sampler_config(sampler, d.schedule));
  ddpm::set_timesteps(s, steps);
  const auto x = ddpm::sample_loop(s, model, noise.cview(), ddpm::NoiseSource<float>(rng));
  std::vector<double> out(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = d.scale * x[i];
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  return examples::run_main("arcsin_inversion", [&] {
    cxxopts::Options opts("arcsin_inversion",
                          "Learn the inverse of y = sin(x): regression where it is a function, conditional diffusion\n"
                          "where it is not. Writes arcsin_regression.png and arcsin_diffusion.png.");
    opts.add_options()
        ("periods", "x range of part 2, in periods of sin, centred on 0 (1: [-pi, pi]); in (0, 6]",
         examples::number("1"))
        ("sampler", examples::sampler_help(), cxxopts::value<std::string>()->default_value("ddpm"))
        ("steps", "sampling steps, 1 to 1000", examples::number("100"))
        ("regression-steps", "training steps of each regression MLP, 101 to 10^7 (after 100 warm-up steps)",
         examples::number("5000"))
        ("diffusion-steps", "training steps of the diffusion model, 201 to 10^7 (after 200 warm-up steps)",
         examples::number("10000"))
        ("batch", "training batch size, 1 to 65536", examples::number("256"))
        ("samples", "diffusion samples per probed y, 1 to 100000", examples::number("1000"))
        ("seed", "random seed", examples::number("0"))
        ("out", "output folder for the PNGs", cxxopts::value<std::string>()->default_value("out/arcsin"));
    examples::add_threads_help(opts);
    const auto r = examples::parse_options(opts, argc, argv);
    if (!r) return 0;
    // Every value is checked before anything is trained or written.
    using examples::option_in;
    const double periods = option_in<double>(*r, "periods", 0, 6, examples::Ends::open_low);
    const std::string sampler = examples::sampler_option(*r);
    const index_t steps = option_in<index_t>(*r, "steps", 1, 1000);
    const int reg_steps = option_in<int>(*r, "regression-steps", 101, 10'000'000);
    const int diffusion_steps = option_in<int>(*r, "diffusion-steps", 201, 10'000'000);
    const index_t batch = option_in<index_t>(*r, "batch", 1, 65'536);
    const index_t per_y = option_in<index_t>(*r, "samples", 1, 100'000);
    const auto seed = examples::seed_option(*r);
    const fs::path out = (*r)["out"].as<std::string>();
    fs::create_directories(out);

    // Part 1 -----------------------------------------------------------------
    std::printf("Part 1: regression of x on y = sin(x), x in [-pi/2, pi/2] (where sin is invertible)\n");
    Regressor reg(64);
    train_regressor(reg, -kPi / 2, kPi / 2, reg_steps, batch, seed, "regression");
    std::vector<double> grid;
    for (int i = 0; i <= 2000; ++i) grid.push_back(-1.0 + i / 1000.0);
    const auto learned = predict(reg, grid);
    double max_err = 0, mean_err = 0, inner_max = 0;
    for (std::size_t i = 0; i < grid.size(); ++i) {
      const double e = std::abs(learned[i] - std::asin(grid[i]));
      max_err = std::max(max_err, e);
      mean_err += e / static_cast<double>(grid.size());
      if (std::abs(grid[i]) <= 0.95) inner_max = std::max(inner_max, e);
    }
    std::printf("  on 2001 y in [-1, 1]: max |error| %.4f, mean |error| %.4f (max for |y| <= 0.95: %.4f;\n"
                "  arcsin's slope is infinite at y = +-1)\n",
                max_err, mean_err, inner_max);
    {
      examples::Plot p(480, 360, {-1.05, 1.05}, {-1.75, 1.75});
      p.axes();
      std::vector<double> truth(grid.size());
      for (std::size_t i = 0; i < grid.size(); ++i) truth[i] = std::asin(grid[i]);
      p.curve(grid, truth, examples::kBlack, 4);
      p.curve(grid, learned, examples::kRed, 2);
      ddpm::io::write_png(out / "arcsin_regression.png", p.image());
    }

    // Part 2 -----------------------------------------------------------------
    const double half = kPi * periods;
    const double lo = -half, hi = half;
    std::printf("\nPart 2: x in [%.3f, %.3f]: sin is not invertible there\n", lo, hi);
    Regressor reg_full(64);
    train_regressor(reg_full, lo, hi, reg_steps, batch, seed + 1, "regression (full range)");
    DiffusionSetup setup{half, {}};
    Denoiser net({.data_dim = 1, .cond_dim = 1, .hidden = 128, .depth = 3, .time_embed_dim = 32});
    train_diffusion(net, setup, lo, hi, diffusion_steps, batch, seed);

    const std::vector<double> probes{-0.9, -0.5, 0.0, 0.3, 0.7, 0.95};
    std::vector<double> ys;
    for (double y : probes)
      for (index_t k = 0; k < per_y; ++k) ys.push_back(y);
    const auto xs = sample_x(net, setup, ys, sampler, steps, seed);
    const auto reg_probe = predict(reg_full, probes);
    std::printf("  %s, %lld steps, %lld samples per y; 'near' = within 0.15 of a preimage\n", sampler.c_str(),
                static_cast<long long>(steps), static_cast<long long>(per_y));
    std::printf("  %6s  %-44s  %-30s  %s\n", "y", "fraction of samples near each preimage", "diffusion |x - nearest|",
                "regression x (|x - nearest|)");
    double diff_total = 0, reg_total = 0;
    for (std::size_t j = 0; j < probes.size(); ++j) {
      const auto roots = preimages(probes[j], lo, hi);
      std::vector<int> near(roots.size(), 0);
      double mean_d = 0;
      for (index_t k = 0; k < per_y; ++k) {
        const double x = xs[j * static_cast<std::size_t>(per_y) + static_cast<std::size_t>(k)];
        for (std::size_t q = 0; q < roots.size(); ++q) near[q] += std::abs(x - roots[q]) < 0.15;
        mean_d += nearest_distance(x, roots) / static_cast<double>(per_y);
      }
      std::string fr;
      for (std::size_t q = 0; q < roots.size(); ++q) {
        char buf[48];
        std::snprintf(buf, sizeof buf, "%s%+.3f: %.0f%%", q ? ", " : "", roots[q], 100.0 * near[q] / per_y);
        fr += buf;
      }
      const double reg_d = nearest_distance(reg_probe[j], roots);
      diff_total += mean_d / static_cast<double>(probes.size());
      reg_total += reg_d / static_cast<double>(probes.size());
      std::printf("  %+6.2f  %-44s  mean %.4f                     %+.3f (%.3f)\n", probes[j], fr.c_str(), mean_d,
                  reg_probe[j], reg_d);
    }
    std::printf("  mean distance to the nearest true preimage: diffusion %.4f, regression %.4f\n", diff_total,
                reg_total);

    // The scatter plot: samples for y spread over [-1, 1].
    std::vector<double> scatter_y;
    ddpm::Rng ry(seed, 9);
    for (int i = 0; i < 3000; ++i) scatter_y.push_back(std::sin(ry.uniform(lo, hi)));
    const auto scatter_x = sample_x(net, setup, scatter_y, sampler, steps, seed + 1);
    {
      examples::Plot p(480, 360, {-1.05, 1.05}, {lo - 0.2, hi + 0.2});
      p.axes();
      for (std::size_t i = 0; i < scatter_y.size(); ++i) p.dot(scatter_y[i], scatter_x[i], examples::kBlue, 1, 0.5);
      // The true inverse: every branch x = arcsin y + 2 pi k, pi - arcsin y + 2 pi k inside the range.
      for (int k = -3; k <= 3; ++k)
        for (int branch = 0; branch < 2; ++branch) {
          std::vector<double> bx, by;
          for (double y : grid) {
            const double x = branch == 0 ? std::asin(y) + 2 * kPi * k : kPi - std::asin(y) + 2 * kPi * k;
            if (x >= lo && x <= hi) bx.push_back(y), by.push_back(x);
          }
          p.curve(bx, by, examples::kBlack, 1, 0.5);
        }
      p.curve(grid, predict(reg_full, grid), examples::kRed, 2);
      ddpm::io::write_png(out / "arcsin_diffusion.png", p.image());
    }
    std::printf("\nwrote %s and %s\n", (out / "arcsin_regression.png").string().c_str(),
                (out / "arcsin_diffusion.png").string().c_str());
    return 0;
  });
}
