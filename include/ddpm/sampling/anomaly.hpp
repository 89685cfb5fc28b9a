#pragma once
// Anomaly detection by reconstruction (AnoDDPM, Wyatt et al. 2022): noise
// an image part of the way, x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0,
// (1 - abar_t) I) (Ho et al. 2020, eq. 4), and let the model take it back
// to t = 0. A model trained on normal data pulls x_t toward the normal data,
// so what it changes on the way back is what does not look normal:
//
//   map(x_0)   = 1/(D C) sum_{d < D} sum_c e(x0_c - xhat0_c^(d))   per pixel
//   score(x_0) = a statistic of the map (mean, max, mean of the top k pixels)
//
// with D independent draws of the forward noise, C channels and e the
// squared (default) or absolute error. Higher means more anomalous.
//
//   AnomalyOptions o;                               // t 250, 4 draws, DDIM with 100 steps
//   auto r = anomaly_maps<float>(model, x0, o);     // r.maps [N,1,H,W], r.scores [N]
//
// `model` is any callable (x_t, t) -> prediction, as for sample_loop
// (sampling/loop.hpp): for a class-conditional network, a guidance wrapper
// holding the null (unconditional) labels, since the class of an image under
// test is unknown.
//
// The reverse part is sdedit (sampling/sdedit.hpp): its input y = x_0 +
// sigma_t eps is the forward sample x_t divided by sqrt(abar_t) (sigma_t =
// sqrt((1 - abar_t) / abar_t)), which sdedit scales back and runs the
// sampler's timesteps from t on. The sampler is options.sampler with
// options.steps timesteps over the whole schedule; only those at or below t
// run (25 of 100 DDIM steps for t = 250). When t is not one of the sampler's
// timesteps the nearest (in log noise level) is used: AnomalyResult::t.
//
// Reproducibility: every (image, draw) pair has its own counter-based
// stream, Rng(seed, anomaly_stream(first_index + i, d)) (core/random.hpp).
// It draws the forward noise eps first, then whatever a stochastic sampler
// (DDPM) asks for that image. So an image's map depends only on the seed,
// its index and the model: not on the batch it is in nor the thread count,
// given a model whose per-image output does not depend on them either (the
// Cpu backend's U-Net is bit-identical on any thread count, but its last
// bits may change with the batch size: keep the batch fixed).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/sampling/any_sampler.hpp"
#include "ddpm/sampling/ddim.hpp"
#include "ddpm/sampling/loop.hpp"
#include "ddpm/sampling/sdedit.hpp"

namespace ddpm {

// The per-pixel error e of the map.
enum class AnomalyError { squared, absolute };

// The per-image statistic of the map.
enum class AnomalyScore {
  mean,        // mean over the pixels
  max,         // the largest pixel
  top_k_mean,  // mean of the k largest pixels (AnomalyOptions::top_k): small defects are not averaged away
};

inline std::string_view to_string(AnomalyScore s) {
  switch (s) {
    case AnomalyScore::mean: return "mean";
    case AnomalyScore::max: return "max";
    case AnomalyScore::top_k_mean: return "top-k-mean";
  }
  return "?";
}

inline AnomalyScore parse_anomaly_score(std::string_view s) {
  if (s == "mean") return AnomalyScore::mean;
  if (s == "max") return AnomalyScore::max;
  if (s == "top-k-mean") return AnomalyScore::top_k_mean;
  fail("anomaly score: expected mean, max or top-k-mean, got '", s, "'");
}

inline constexpr index_t kMaxAnomalyDraws = 1000;

struct AnomalyOptions {
  index_t t_start = 250;  // the timestep x_0 is noised to, in [1, num_train_timesteps - 1]
  index_t draws = 4;      // D, independent forward noises averaged, in [1, kMaxAnomalyDraws]
  SamplerConfig sampler = DDIMConfig{};  // the reverse process (deterministic DDIM by default)
  index_t steps = 100;    // the sampler's timesteps over the whole schedule (those <= t run)
  AnomalyError error = AnomalyError::squared;
  AnomalyScore score = AnomalyScore::top_k_mean;
  index_t top_k = 16;     // pixels averaged by top_k_mean, >= 1 (capped at the image's pixels)
  std::uint64_t seed = 0;
  index_t first_index = 0;  // the index of x_0's first image in the whole set (its streams), >= 0

  // Checks everything but the sampler (make_sampler checks its config).
  void validate(index_t num_train_timesteps) const {
    require(t_start >= 1 && t_start <= num_train_timesteps - 1, "anomaly: t_start must be in [1, ",
            num_train_timesteps - 1, "], got ", t_start);
    require(draws >= 1 && draws <= kMaxAnomalyDraws, "anomaly: draws must be in [1, ", kMaxAnomalyDraws, "], got ",
            draws);
    require(steps >= 1 && steps <= num_train_timesteps, "anomaly: steps must be in [1, ", num_train_timesteps,
            "], got ", steps);
    require(top_k >= 1, "anomaly: top_k must be >= 1, got ", top_k);
    require(first_index >= 0, "anomaly: first_index must be >= 0, got ", first_index);
  }
};

// The stream of image `image` (its index in the whole set) in draw `draw`.
inline std::uint64_t anomaly_stream(index_t image, index_t draw) {
  return (static_cast<std::uint64_t>(draw) << 40) | static_cast<std::uint64_t>(image);
}

template <Scalar T>
struct AnomalyResult {
  Tensor<T> maps;            // [N, 1, H, W]: the error averaged over draws and channels
  Tensor<T> reconstruction;  // [N, C, H, W]: the reconstructions averaged over draws
  std::vector<double> scores;  // [N]: options.score of each map
  index_t t = 0;             // the timestep actually entered (the sampler's nearest to t_start)
};

// The statistic `s` of one map (its pixels).
template <Scalar T>
double anomaly_score(std::span<const T> map, AnomalyScore s, index_t top_k) {
  require(!map.empty(), "anomaly_score: empty map");
  require(top_k >= 1, "anomaly_score: top_k must be >= 1, got ", top_k);
  std::vector<double> v(map.begin(), map.end());
  switch (s) {
    case AnomalyScore::mean: break;
    case AnomalyScore::max: return *std::max_element(v.begin(), v.end());
    case AnomalyScore::top_k_mean: {
      const auto k = std::min(static_cast<std::size_t>(top_k), v.size());
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k - 1), v.end(), std::greater<>());
      v.resize(k);
      std::sort(v.begin(), v.end());  // a fixed summation order
      break;
    }
  }
  double sum = 0;
  for (double x : v) sum += x;
  return sum / static_cast<double>(v.size());
}

// The anomaly maps and scores of the images x0 [N, C, H, W] (in the model's
// data space). `progress` sees (k, draws * n, t) after each of the draws * n
// reverse steps.
template <Scalar T, class Model, class Progress = NoProgress>
  requires ModelFor<Model, T>
AnomalyResult<T> anomaly_maps(Model&& model, ConstTensorView<T> x0, const AnomalyOptions& o = {},
                              Progress&& progress = {}) {
  require(x0.rank() == 4 && x0.numel() > 0, "anomaly: expected images [N, C, H, W], got ", x0.shape().str());
  AnySampler<T> proto = make_sampler<T>(o.sampler);
  const NoiseSchedule<T>& schedule = std::visit([](const auto& s) -> const NoiseSchedule<T>& { return s.schedule(); },
                                                proto);
  o.validate(schedule.num_train_timesteps());
  set_timesteps(proto, o.steps);
  const auto ts = timesteps(proto);
  const index_t entry = sdedit_entry_index(schedule, ts, noise_level(schedule, o.t_start));
  AnomalyResult<T> r;
  r.t = static_cast<index_t>(ts[static_cast<std::size_t>(entry)]);
  const double sigma = noise_level(schedule, r.t);

  const index_t n = x0.dim(0), channels = x0.dim(1), pixels = x0.dim(2) * x0.dim(3), per = channels * pixels;
  const index_t run = static_cast<index_t>(ts.size()) - entry;  // steps per draw
  std::vector<double> map_sum(static_cast<std::size_t>(n * pixels), 0.0), rec_sum(static_cast<std::size_t>(x0.numel()), 0.0);
  std::vector<Rng> rngs;
  Tensor<T> y(x0.shape());
  std::vector<double> eps(static_cast<std::size_t>(per));
  for (index_t d = 0; d < o.draws; ++d) {
    rngs.clear();
    for (index_t i = 0; i < n; ++i) rngs.emplace_back(o.seed, anomaly_stream(o.first_index + i, d));
    // y = x_0 + sigma_t eps: x_t ~ q(x_t | x_0) over sqrt(abar_t).
    for (index_t i = 0; i < n; ++i) {
      rngs[static_cast<std::size_t>(i)].fill_normal(std::span<double>(eps));
      for (index_t j = 0; j < per; ++j)
        y[i * per + j] = static_cast<T>(x0[i * per + j] + sigma * eps[static_cast<std::size_t>(j)]);
    }
    // A stochastic step's noise: each image from its own stream.
    const NoiseSource<T> noise(typename NoiseSource<T>::Fill([&](TensorView<T> out) {
      require(out.rank() >= 1 && out.dim(0) == n, "anomaly: the sampler asked for noise of shape ", out.shape().str(),
              ", expected ", n, " images");
      const index_t m = out.numel() / n;
      for (index_t i = 0; i < n; ++i)
        rngs[static_cast<std::size_t>(i)].fill_normal(out.span().subspan(static_cast<std::size_t>(i * m),
                                                                          static_cast<std::size_t>(m)));
    }));
    AnySampler<T> sampler = proto;  // a fresh copy: multistep samplers keep state
    const Tensor<T> rec = sdedit(sampler, model, y.cview(), sigma, noise,
                                 [&](index_t k, index_t, double t) { progress(d * run + k, o.draws * run, t); });
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < channels; ++c)
        for (index_t p = 0; p < pixels; ++p) {
          const index_t j = i * per + c * pixels + p;
          const double e = static_cast<double>(x0[j]) - static_cast<double>(rec[j]);
          map_sum[static_cast<std::size_t>(i * pixels + p)] += o.error == AnomalyError::squared ? e * e : std::abs(e);
          rec_sum[static_cast<std::size_t>(j)] += static_cast<double>(rec[j]);
        }
  }
  r.maps = Tensor<T>({n, 1, x0.dim(2), x0.dim(3)});
  r.reconstruction = Tensor<T>(x0.shape());
  const double dc = static_cast<double>(o.draws * channels);
  for (index_t i = 0; i < r.maps.numel(); ++i) r.maps[i] = static_cast<T>(map_sum[static_cast<std::size_t>(i)] / dc);
  for (index_t i = 0; i < x0.numel(); ++i)
    r.reconstruction[i] = static_cast<T>(rec_sum[static_cast<std::size_t>(i)] / static_cast<double>(o.draws));
  r.scores.resize(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i)
    r.scores[static_cast<std::size_t>(i)] = anomaly_score<T>(
        std::span<const T>(r.maps.data() + i * pixels, static_cast<std::size_t>(pixels)), o.score, o.top_k);
  return r;
}

}  // namespace ddpm
