#pragma once
// `mnist_diffusion train-curve`: time to quality. For each time budget the
// class-conditional model is trained from scratch with `train --time-limit`
// (so each point is what a user gets from a run of that length, its
// learning-rate decay ending at its own limit), and its EMA weights are
// measured as `evaluate` does: the fraction of class-conditional samples the
// digit classifier assigns to the requested digit, and the Frechet distance
// of classifier features to held-out digits.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "ddpm/io/image.hpp"
#include "../common/plot.hpp"
#include "classifier.hpp"
#include "generate.hpp"
#include "train.hpp"

namespace mnist {

struct CurvePoint {
  double minutes = 0;        // the budget
  std::int64_t steps = 0;    // the training steps that fitted
  double train_seconds = 0;  // the whole `train` call, loading and export included
  double accuracy = 0, frechet = 0;
};

struct CurveOptions {
  TrainOptions recipe;  // data, seed and the recipe; out is the folder of all runs
  std::vector<double> minutes{1, 2, 3, 5, 10};
  ddpm::index_t per_class = 20;
  GenerateOptions sampling;
};

// Trains and measures one model per budget, in order; each run goes to
// <recipe.out>/<minutes>min. `test_features`: classifier features of the
// held-out digits.
inline std::vector<CurvePoint> train_curve(const CurveOptions& o, Classifier& net,
                                           ddpm::ConstTensorView<float> test_features) {
  std::vector<std::int64_t> labels(static_cast<std::size_t>(o.per_class * kNumClasses));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % kNumClasses);
  std::vector<CurvePoint> points;
  for (double m : o.minutes) {
    TrainOptions t = o.recipe;
    char name[32];
    std::snprintf(name, sizeof name, "%gmin", m);
    t.out = o.recipe.out / name;
    t.time_limit = 60.0 * m;
    t.steps = examples::kMaxTrainingSteps;
    t.resume = false;
    std::fprintf(stderr, "== %g minutes of training -> %s\n", m, t.out.string().c_str());
    const auto t0 = std::chrono::steady_clock::now();
    CurvePoint p{.minutes = m, .steps = train_steps(t)};
    p.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto unet = ddpm::io::load_unet2d<float, ddpm::backend::Cpu>(t.out / "model");
    unet.set_mode(ddpm::nn::Mode::Inference);
    ddpm::Tensor<float> f;
    const auto pred = classify(net, generate(unet, labels, o.sampling).cview(), &f);
    p.accuracy = accuracy(pred, labels);
    p.frechet = frechet_distance(f.cview(), test_features);
    std::printf("%5g min (%lld steps, %.0f s): classified as the requested digit %.1f%%, Frechet distance %.1f\n", m,
                static_cast<long long>(p.steps), p.train_seconds, 100 * p.accuracy, p.frechet);
    std::fflush(stdout);
    points.push_back(p);
  }
  return points;
}

inline std::string curve_table(const std::vector<CurvePoint>& points) {
  std::string s = "| minutes | steps | wall time (s) | classified as requested | Frechet distance |\n|---:|---:|---:|---:|---:|\n";
  char buf[160];
  for (const auto& p : points) {
    std::snprintf(buf, sizeof buf, "| %g | %lld | %.0f | %.1f%% | %.1f |\n", p.minutes, static_cast<long long>(p.steps),
                  p.train_seconds, 100 * p.accuracy, p.frechet);
    s += buf;
  }
  return s;
}

// Two panels against minutes of training (from 0): left the Frechet
// distance (lower is better), right the fraction classified as the requested
// digit, with a dashed line at 97%.
inline ddpm::io::Image curve_plot(const std::vector<CurvePoint>& points) {
  double fmax = 1, xmax = 1;
  std::vector<double> xs, fd, acc;
  for (const auto& p : points) {
    xs.push_back(p.minutes), fd.push_back(p.frechet), acc.push_back(p.accuracy);
    fmax = std::max(fmax, p.frechet), xmax = std::max(xmax, p.minutes);
  }
  const examples::Range x{0, xmax * 1.05};
  examples::Plot left(420, 320, x, {0, fmax * 1.05}), right(420, 320, x, {0, 1.02});
  left.axes(), right.axes();
  right.hline(0.97, examples::kRed);
  left.curve(xs, fd, examples::kBlue), right.curve(xs, acc, examples::kBlue);
  for (std::size_t i = 0; i < xs.size(); ++i) left.dot(xs[i], fd[i], examples::kBlue, 2), right.dot(xs[i], acc[i], examples::kBlue, 2);
  return examples::side_by_side(left.image(), right.image());
}

}  // namespace mnist
