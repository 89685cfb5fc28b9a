#pragma once
// The sampler quality table: for each sampler and each budget of model
// evaluations, class-conditional samples of the model are measured with the
// digit classifier (the fraction classified as the requested digit, and the
// Frechet distance of classifier features to held-out digits), with the wall
// time per image. One "model evaluation" is one call of the guided model
// (the conditional and unconditional halves of classifier-free guidance are
// one batched network call); a sampler gets the most steps whose model calls
// fit the budget (Heun and KDPM2 call the model twice per step but once on
// the last, so 2n - 1 calls).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "ddpm/io/image.hpp"
#include "../common/cli.hpp"
#include "../common/plot.hpp"
#include "classifier.hpp"
#include "generate.hpp"

namespace mnist {

// A sampler of the table: a registry name, its sigma spacing ("default",
// "karras", "exponential") and whether a Langevin corrector step follows each
// step, written "name[:spacing][+langevin]"; or "sde-ve", the score SDE
// predictor-corrector loop (one corrector step a level).
struct SamplerVariant {
  std::string name, sigmas = "default";
  bool langevin = false;
  std::string label() const {
    return name + (sigmas == "default" ? "" : ":" + sigmas) + (langevin && name != kSdeVe ? "+langevin" : "");
  }
};

inline SamplerVariant parse_variant(std::string text) {
  SamplerVariant v;
  if (const auto plus = text.find('+'); plus != std::string::npos) {
    ddpm::require(text.substr(plus) == "+langevin", "--samplers: expected name[:spacing][+langevin], got '", text, "'");
    v.langevin = true;
    text.resize(plus);
  }
  const auto colon = text.find(':');
  v.name = text.substr(0, colon);
  if (colon != std::string::npos) v.sigmas = text.substr(colon + 1);
  if (v.name == kSdeVe) {
    ddpm::require(v.sigmas == "default", "--samplers: sde-ve uses its own geometric sigmas, got '", text, "'");
    v.langevin = true;
    return v;
  }
  const auto config = examples::sampler_config(v.name, {}, v.sigmas);  // unknown names and spacings throw
  ddpm::require(ddpm::sampler_direction(config) == ddpm::SamplerDirection::to_data, "--samplers: ", v.name,
                " runs from data to noise; expected ", examples::sampler_help());
  return v;
}

// Every generating sampler of the registry with its own sigmas, the Karras
// variants of those that have a sigma spacing, DDIM with the Langevin
// corrector, and sde-ve.
inline std::vector<SamplerVariant> default_variants() {
  std::vector<SamplerVariant> out, karras;
  ddpm::Samplers::for_each([&]<class Traits>(std::type_identity<Traits>) {
    if constexpr (ddpm::sampler_direction<Traits>() == ddpm::SamplerDirection::to_data) {
      out.push_back({std::string(Traits::name)});
      if constexpr (requires(typename Traits::config_type c) { c.sigma_spacing; })
        karras.push_back({std::string(Traits::name), "karras"});
    }
  });
  out.insert(out.end(), karras.begin(), karras.end());
  out.push_back({"ddim", "default", true});
  out.push_back({kSdeVe, "default", true});
  return out;
}

// Model calls of a run of `steps` steps (one Langevin step a level: a call
// after every step but the last; sde-ve: a corrector and a predictor call a
// level), and the most steps within `budget` calls (0 if none fits).
inline ddpm::index_t model_calls(const SamplerVariant& v, ddpm::index_t steps) {
  if (v.name == kSdeVe) return steps < 2 ? std::numeric_limits<ddpm::index_t>::max() : 2 * steps;
  auto s = ddpm::make_sampler<float>(examples::sampler_config(v.name, {}, v.sigmas));
  ddpm::set_timesteps(s, steps);
  return static_cast<ddpm::index_t>(ddpm::timesteps(s).size()) + (v.langevin ? steps - 1 : 0);
}
inline ddpm::index_t steps_within(const SamplerVariant& v, ddpm::index_t budget) {
  ddpm::index_t best = 0;
  for (ddpm::index_t n = 1; n <= budget; ++n)
    if (model_calls(v, n) <= budget) best = n;
  return best;
}

struct QualityCell {
  std::string sampler;
  ddpm::index_t budget = 0, steps = 0, calls = 0;
  double accuracy = 0, frechet = 0, ms_per_image = 0;
};

struct QualityOptions {
  std::vector<SamplerVariant> samplers;
  std::vector<ddpm::index_t> budgets{5, 10, 20, 50};
  ddpm::index_t per_class = 20;
  double guidance = 3.0;
  std::uint64_t seed = 0;
};

// Every (sampler, budget) cell; `test_features` are the classifier features of held-out digits.
inline std::vector<QualityCell> measure_quality(UNet& unet, Classifier& net, ddpm::ConstTensorView<float> test_features,
                                                const QualityOptions& o) {
  std::vector<std::int64_t> labels(static_cast<std::size_t>(o.per_class * kNumClasses));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % kNumClasses);
  std::vector<QualityCell> cells;
  for (const auto& v : o.samplers)
    for (ddpm::index_t budget : o.budgets) {
      QualityCell c{.sampler = v.label(), .budget = budget, .steps = steps_within(v, budget)};
      if (c.steps == 0) {
        std::printf("%-16s %3lld evaluations: no run fits\n", c.sampler.c_str(), static_cast<long long>(budget));
        cells.push_back(c);
        continue;
      }
      c.calls = model_calls(v, c.steps);
      GenerateOptions g{.sampler = v.name, .sigmas = v.sigmas, .steps = c.steps, .langevin = v.langevin,
                        .guidance = o.guidance, .seed = o.seed, .progress = false};
      const auto t0 = std::chrono::steady_clock::now();
      const auto samples = generate(unet, labels, g);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ddpm::Tensor<float> f;
      const auto pred = classify(net, samples.cview(), &f);
      c.accuracy = accuracy(pred, labels);
      c.frechet = frechet_distance(f.cview(), test_features);
      c.ms_per_image = 1000.0 * secs / static_cast<double>(labels.size());
      std::printf("%-16s %3lld evaluations (%lld steps, %lld calls): classified %5.1f%%, Frechet %7.2f, %.2f ms/image\n",
                  c.sampler.c_str(), static_cast<long long>(budget), static_cast<long long>(c.steps),
                  static_cast<long long>(c.calls), 100 * c.accuracy, c.frechet, c.ms_per_image);
      std::fflush(stdout);
      cells.push_back(c);
    }
  return cells;
}

// Markdown: one row per sampler, "accuracy / Frechet" per budget, then the time per image at the largest budget.
inline std::string quality_table(const std::vector<QualityCell>& cells, const QualityOptions& o) {
  std::string s = "| sampler |";
  for (auto b : o.budgets) s += " " + std::to_string(b) + " evals |";
  s += " ms/image at " + std::to_string(o.budgets.back()) + " |\n|---|";
  for (std::size_t i = 0; i <= o.budgets.size(); ++i) s += "---|";
  s += "\n";
  char buf[64];
  for (std::size_t i = 0; i < cells.size(); i += o.budgets.size()) {
    s += "| " + cells[i].sampler + " |";
    for (std::size_t j = 0; j < o.budgets.size(); ++j) {
      const auto& c = cells[i + j];
      if (c.steps == 0) s += " - |";
      else std::snprintf(buf, sizeof buf, " %.1f%% / %.1f |", 100 * c.accuracy, c.frechet), s += buf;
    }
    std::snprintf(buf, sizeof buf, " %.2f |\n", cells[i + o.budgets.size() - 1].ms_per_image);
    s += buf;
  }
  return s;
}

// Two panels side by side, x = log(model evaluations): left the Frechet
// distance (lower is better), right the fraction classified as the requested
// digit; one colour per sampler (the table lists them in order).
inline ddpm::io::Image quality_plot(const std::vector<QualityCell>& cells, const QualityOptions& o,
                                    const std::vector<examples::Rgb>& colours) {
  double fmax = 1;
  for (const auto& c : cells) fmax = std::max(fmax, c.frechet);
  const examples::Range x{std::log(static_cast<double>(o.budgets.front())) - 0.1,
                          std::log(static_cast<double>(o.budgets.back())) + 0.1};
  examples::Plot left(420, 320, x, {0, fmax * 1.05}), right(420, 320, x, {0, 1.02});
  left.axes(), right.axes();
  for (std::size_t i = 0, k = 0; i < cells.size(); i += o.budgets.size(), ++k) {
    std::vector<double> xs, fd, acc;
    for (std::size_t j = 0; j < o.budgets.size(); ++j)
      if (cells[i + j].steps > 0) {
        xs.push_back(std::log(static_cast<double>(cells[i + j].budget)));
        fd.push_back(cells[i + j].frechet);
        acc.push_back(cells[i + j].accuracy);
      }
    const auto c = colours[k % colours.size()];
    left.curve(xs, fd, c), right.curve(xs, acc, c);
    for (std::size_t j = 0; j < xs.size(); ++j) left.dot(xs[j], fd[j], c, 2), right.dot(xs[j], acc[j], c, 2);
  }
  return examples::side_by_side(left.image(), right.image());
}

// Distinct colours for the plot's curves, in table order.
inline const std::vector<examples::Rgb>& palette() {
  static const std::vector<examples::Rgb> p{{0, 0, 0},     {220, 40, 40},  {40, 90, 220},  {30, 160, 60},
                                            {230, 140, 0}, {150, 60, 190}, {0, 170, 190},  {190, 120, 80},
                                            {240, 90, 190}, {120, 120, 0}, {100, 100, 100}, {0, 90, 90},
                                            {140, 0, 0},   {0, 0, 120},    {90, 200, 90}};
  return p;
}

}  // namespace mnist
