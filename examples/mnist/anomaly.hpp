#pragma once
// anomaly: digits scored by how much the model changes them when it
// reconstructs them from part-way noise (AnoDDPM; the library's
// sampling/anomaly.hpp), with the shipped class-conditional model run
// unconditionally (the null label: an image under test has no label).
// The evaluation measures the image-level AUROC of held-out digits against
// held-out digits with synthetic defects (defects.hpp) and against
// Fashion-MNIST items, and the pixel-level AUROC of the maps against the
// defect masks.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "ddpm/io/file.hpp"
#include "ddpm/io/idx.hpp"
#include "ddpm/io/image.hpp"
#include "ddpm/sampling/anomaly.hpp"
#include "ddpm/sampling/guidance.hpp"
#include "../common/auroc.hpp"
#include "../common/cli.hpp"
#include "../common/progress.hpp"
#include "defects.hpp"
#include "generate.hpp"
#include "mnist_data.hpp"

namespace mnist {

// The defaults of `anomaly` (README: the measured AUROC table): noise to
// t = 250 (sigma_t ~ 0.36 in [-1, 1] units), reconstruct with 25 of 100
// DDIM steps, 4 draws, score the mean of the 8 largest map pixels.
struct AnomalyRun {
  ddpm::index_t t = 250;
  ddpm::index_t draws = 4;
  ddpm::index_t steps = 100;
  std::string sampler = "ddim";
  ddpm::AnomalyScore score = ddpm::AnomalyScore::top_k_mean;
  ddpm::index_t top_k = 8;
  std::uint64_t seed = 0;
  ddpm::index_t batch = 50;  // images per network call
  bool progress = true;

  ddpm::AnomalyOptions library(ddpm::index_t first_index) const {
    ddpm::AnomalyOptions o;
    o.t_start = t;
    o.draws = draws;
    o.sampler = examples::sampler_config(sampler);
    o.steps = steps;
    o.score = score;
    o.top_k = top_k;
    o.seed = seed;
    o.first_index = first_index;
    return o;
  }
};

// Anomaly maps, mean reconstructions and scores of images [N, 1, 28, 28]
// in [-1, 1]. Image i uses the random streams of index i whatever the batch.
inline ddpm::AnomalyResult<float> score_images(UNet& unet, ddpm::ConstTensorView<float> images, const AnomalyRun& o,
                                               const std::string& label = "anomaly") {
  unet.set_mode(ddpm::nn::Mode::Inference);
  const ddpm::index_t n = images.dim(0);
  ddpm::AnomalyResult<float> all;
  all.maps = ddpm::Tensor<float>({n, 1, kImageSide, kImageSide});
  all.reconstruction = ddpm::Tensor<float>(images.shape());
  all.scores.reserve(static_cast<std::size_t>(n));
  const ddpm::index_t batches = (n + o.batch - 1) / o.batch;
  examples::Progress bar(label, n);
  for (ddpm::index_t b = 0; b < batches; ++b) {
    const ddpm::index_t first = b * o.batch, count = std::min(o.batch, n - first);
    auto model = ddpm::make_guidance<float>(label_fn(unet),
                                             std::vector<std::int64_t>(static_cast<std::size_t>(count), kNullLabel), {});
    const auto r = ddpm::anomaly_maps<float>(model, images.slice(first, count), o.library(first));
    std::copy(r.maps.begin(), r.maps.end(), all.maps.data() + first * kPixels);
    std::copy(r.reconstruction.begin(), r.reconstruction.end(), all.reconstruction.data() + first * kPixels);
    all.scores.insert(all.scores.end(), r.scores.begin(), r.scores.end());
    all.t = r.t;
    if (o.progress) bar.update(first + count);
  }
  if (o.progress) bar.finish();
  return all;
}

// One score a line, as many digits as a double needs (written to a
// temporary name, then renamed: io/file.hpp).
inline void write_scores(const fs::path& out, const std::vector<double>& scores) {
  if (!out.parent_path().empty()) fs::create_directories(out.parent_path());
  std::string text;
  char line[32];
  for (double s : scores) text.append(line, static_cast<std::size_t>(std::snprintf(line, sizeof line, "%.17g\n", s)));
  ddpm::io::write_text_file(out, text);
}

// A grid [3 * sets * shown] of rows input / reconstruction / map: the first
// `shown` images of each set side by side, the maps on one scale (the
// largest value shown is white).
struct MapSet {
  ddpm::ConstTensorView<float> images;
  const ddpm::AnomalyResult<float>* result;
};
inline ddpm::Tensor<float> maps_grid(std::initializer_list<MapSet> sets, ddpm::index_t shown) {
  float top = 1e-6f;
  for (const auto& s : sets)
    for (ddpm::index_t i = 0; i < shown * kPixels; ++i) top = std::max(top, s.result->maps[i]);
  const auto cols = static_cast<ddpm::index_t>(sets.size()) * shown;
  ddpm::Tensor<float> out({3 * cols, 1, kImageSide, kImageSide});
  ddpm::index_t col = 0;
  for (const auto& s : sets) {
    for (ddpm::index_t i = 0; i < shown * kPixels; ++i) {
      const ddpm::index_t at = col * kPixels + i;
      out[at] = s.images[i];
      out[cols * kPixels + at] = std::clamp(s.result->reconstruction[i], -1.0f, 1.0f);
      out[2 * cols * kPixels + at] = 2.0f * std::min(1.0f, s.result->maps[i] / top) - 1.0f;
    }
    col += shown;
  }
  return out;
}

struct AnomalyEvaluation {
  double auroc_defects = 0, auroc_fashion = 0, auroc_pixels = 0;
  double auroc_kind[kDefectKinds] = {};
  double seconds = 0;
  ddpm::index_t t = 0, count = 0;
};

// The pixel-level AUROC of the maps against the masks (1: defect), over all their pixels.
inline double pixel_auroc(ddpm::ConstTensorView<float> maps, ddpm::ConstTensorView<float> masks) {
  std::vector<double> s(maps.begin(), maps.end());
  std::vector<std::uint8_t> pos(static_cast<std::size_t>(masks.numel()));
  for (ddpm::index_t i = 0; i < masks.numel(); ++i) pos[static_cast<std::size_t>(i)] = masks[i] > 0.5f;
  return examples::auroc(s, pos);
}

// Normal: digits[0, count); defective: digits[count, 2 count) with defects
// (seed `o.seed`); fashion: fashion[0, count). `maps_png`, when not empty,
// gets input / reconstruction / map rows of the first 8 of each set.
inline AnomalyEvaluation evaluate_anomaly(UNet& unet, ddpm::ConstTensorView<float> digits,
                                          ddpm::ConstTensorView<float> fashion, ddpm::index_t count,
                                          const AnomalyRun& o, const fs::path& maps_png = {}) {
  ddpm::require(digits.dim(0) >= 2 * count, "anomaly --evaluate: --count ", count, " needs ", 2 * count,
                " held-out digits, the data has ", digits.dim(0));
  ddpm::require(fashion.dim(0) >= count, "anomaly --evaluate: --count ", count, " needs ", count,
                " Fashion-MNIST items, the data has ", fashion.dim(0));
  const auto t0 = std::chrono::steady_clock::now();
  const auto normal_in = digits.slice(0, count);
  const Defects defects = add_defects(digits.slice(count, count), o.seed);
  const auto fashion_in = fashion.slice(0, count);
  const auto normal = score_images(unet, normal_in, o, "digits");
  const auto defective = score_images(unet, defects.images.cview(), o, "defects");
  const auto items = score_images(unet, fashion_in, o, "fashion");
  AnomalyEvaluation e;
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  e.t = normal.t;
  e.count = count;
  e.auroc_defects = examples::auroc(normal.scores, defective.scores);
  e.auroc_fashion = examples::auroc(normal.scores, items.scores);
  e.auroc_pixels = pixel_auroc(defective.maps.cview(), defects.masks.cview());
  for (int k = 0; k < kDefectKinds; ++k) {
    std::vector<double> s;
    for (ddpm::index_t i = 0; i < count; ++i)
      if (static_cast<int>(defects.kinds[static_cast<std::size_t>(i)]) == k)
        s.push_back(defective.scores[static_cast<std::size_t>(i)]);
    e.auroc_kind[k] = s.empty() ? 0.5 : examples::auroc(normal.scores, s);
  }
  if (!maps_png.empty()) {
    const ddpm::index_t shown = std::min<ddpm::index_t>(8, count);
    const auto grid = maps_grid({{normal_in, &normal}, {defects.images.cview(), &defective}, {fashion_in, &items}}, shown);
    ddpm::io::write_png(maps_png, ddpm::io::make_grid(grid.cview(), static_cast<int>(3 * shown)));
  }
  return e;
}

}  // namespace mnist
