// Classifier-free guidance, SDEdit entry and RePaint inpainting: wrappers
// around a model callable and the sampler, checked with closed-form models.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "ddpm/core/random.hpp"
#include "ddpm/core/model.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/sampling/ddim.hpp"
#include "ddpm/sampling/ddpm.hpp"
#include "ddpm/sampling/guidance.hpp"
#include "ddpm/sampling/inpaint.hpp"
#include "ddpm/sampling/loop.hpp"
#include "ddpm/sampling/sdedit.hpp"

using namespace ddpm;

namespace {

// out = x + 10 * label: records the batch sizes and labels it was called with.
struct LabelEcho {
  std::vector<index_t>* batches;
  std::vector<std::int64_t>* seen;
  Tensor<double> out;
  ConstTensorView<double> operator()(ConstTensorView<double> x, double, std::span<const std::int64_t> labels) {
    batches->push_back(x.dim(0));
    seen->assign(labels.begin(), labels.end());
    out.resize(x.shape());
    const index_t per = x.numel() / x.dim(0);
    for (index_t i = 0; i < x.numel(); ++i) out[i] = x[i] + 10.0 * static_cast<double>(labels[static_cast<std::size_t>(i / per)]);
    return out.cview();
  }
};

// The exact epsilon for data that is the single point `target` (per pixel):
// eps = (x_t - sqrt(abar_t) target) / sqrt(1 - abar_t).
struct PointMassModel {
  const NoiseSchedule<double>* schedule;
  ConstTensorView<double> target;
  int* calls;
  Tensor<double> out;
  ConstTensorView<double> operator()(ConstTensorView<double> x, double t) {
    ++*calls;
    const double abar = schedule->alpha_cumprod(static_cast<index_t>(t));
    out.resize(x.shape());
    for (index_t i = 0; i < x.numel(); ++i)
      out[i] = (x[i] - std::sqrt(abar) * target[i % target.numel()]) / std::sqrt(1 - abar);
    return out.cview();
  }
};

}  // namespace

TEST_CASE("classifier-free guidance combines one doubled batch", "[sampling][guidance]") {
  std::vector<index_t> batches;
  std::vector<std::int64_t> seen;
  Tensor<double> x({3, 2}, std::vector<double>{1, 2, 3, 4, 5, 6});
  auto guided = make_guidance<double>(LabelEcho{&batches, &seen, {}}, {1, 2, 3}, {.scale = 2.5, .null_label = 7});
  const auto y = guided(x.cview(), 500.0);
  REQUIRE(batches == std::vector<index_t>{6});
  CHECK(seen == std::vector<std::int64_t>{1, 2, 3, 7, 7, 7});
  // uncond + w (cond - uncond) = x + 70 + 2.5 * 10 * (label - 7)
  for (index_t i = 0; i < 6; ++i) {
    const double label = static_cast<double>(1 + i / 2);
    CHECK(y[i] == Approx(x[i] + 70.0 + 2.5 * 10.0 * (label - 7.0)));
  }
  // Scale 1 is the conditional model alone, one forward of N.
  guided.set_scale(1.0);
  const auto c = guided(x.cview(), 500.0);
  CHECK(batches.back() == 3);
  for (index_t i = 0; i < 6; ++i) CHECK(c[i] == Approx(x[i] + 10.0 * static_cast<double>(1 + i / 2)));
  // Scale 0 is the unconditional model.
  guided.set_scale(0.0);
  const auto u = guided(x.cview(), 500.0);
  for (index_t i = 0; i < 6; ++i) CHECK(u[i] == Approx(x[i] + 70.0));
}

TEST_CASE("guidance errors name the problem", "[sampling][guidance][errors]") {
  std::vector<index_t> batches;
  std::vector<std::int64_t> seen;
  CHECK_THROWS_WITH(make_guidance<double>(LabelEcho{&batches, &seen, {}}, {1}, {.scale = 3.0}),
                    Catch::Contains("null label"));
  auto g = make_guidance<double>(LabelEcho{&batches, &seen, {}}, {1, 2}, {.scale = 3.0, .null_label = 0});
  Tensor<double> x({3, 1});
  CHECK_THROWS_WITH(g(x.cview(), 1.0), Catch::Contains("2 labels for a batch of 3"));
  CHECK_THROWS_WITH(g.set_scale(NAN), Catch::Contains("finite"));
}

TEST_CASE("label_model adapts an Denoiser", "[sampling][guidance]") {
  struct Toy {
    Parameters<double> p;
    Tensor<double> y;
    Parameters<double>& parameters() { return p; }
    ConstTensorView<double> forward(ConstTensorView<double> x, std::span<const double> t, const Conditioning<double>& c) {
      y.resize(x.shape());
      for (index_t i = 0; i < x.numel(); ++i) y[i] = t[static_cast<std::size_t>(i)] + static_cast<double>(c.class_labels[static_cast<std::size_t>(i)]);
      return y.cview();
    }
    ConstTensorView<double> backward(ConstTensorView<double> d) { return d; }
  } toy;
  auto f = label_model<double>(toy);
  Tensor<double> x({2, 1});
  const std::vector<std::int64_t> labels{4, 5};
  const auto y = f(x.cview(), 3.0, labels);
  CHECK(y[0] == 7.0);
  CHECK(y[1] == 8.0);
}

namespace {
// A Denoiser conditioned on an image (and labels), non-linear in the image:
// y = x * (1 + image^2) + label + t / 1000. Records every image it saw.
struct ImageToy {
  Parameters<double> p;
  Tensor<double> y;
  std::vector<std::vector<double>> images;
  Parameters<double>& parameters() { return p; }
  ConstTensorView<double> forward(ConstTensorView<double> x, std::span<const double> t, const Conditioning<double>& c) {
    require(c.image.data() != nullptr && c.image.shape() == x.shape(), "ImageToy: image ", c.image.shape().str(),
            " for x ", x.shape().str());
    images.emplace_back(c.image.begin(), c.image.end());
    y.resize(x.shape());
    const index_t n = x.dim(0), per = x.numel() / n;
    for (index_t i = 0; i < x.numel(); ++i) {
      const auto k = static_cast<std::size_t>(i / per);
      const double label = c.class_labels.empty() ? 0.0 : static_cast<double>(c.class_labels[k]);
      y[i] = x[i] * (1 + c.image[i] * c.image[i]) + label + t[k] / 1000;
    }
    return y.cview();
  }
  ConstTensorView<double> backward(ConstTensorView<double> d) { return d; }
};
}  // namespace

TEST_CASE("guidance with a condition image: the unconditional half sees zeros, as two manual calls",
          "[sampling][guidance][condition]") {
  ImageToy toy;
  static_assert(Denoiser<ImageToy, double>);
  auto model = conditioned_model<double>(toy);
  Tensor<double> x({2, 1, 2, 2}), img({2, 1, 2, 2}), zeros({2, 1, 2, 2}, 0.0);
  Rng rng(4);
  rng.fill_normal(x.span());
  rng.fill_normal(img.span());
  const std::vector<std::int64_t> labels{1, 2}, nulls{9, 9};
  const double t = 250, w = 2.5;
  // Manual: the conditional and the unconditional (null label, zero image) calls.
  const auto call = [&](const std::vector<std::int64_t>& l, const Tensor<double>& im) {
    Conditioning<double> c;
    c.class_labels = l;
    c.image = im.cview();
    const auto y = model(x.cview(), t, c);
    return std::vector<double>(y.begin(), y.end());
  };
  for (bool with_labels : {true, false}) {
    const std::vector<std::int64_t> none;
    const auto cond = call(with_labels ? labels : none, img), uncond = call(with_labels ? nulls : none, zeros);
    REQUIRE(cond != uncond);
    auto guided = make_guidance<double>(model, with_labels ? labels : none, {.scale = w, .null_label = 9}, img.cview());
    toy.images.clear();
    const auto g = guided(x.cview(), t);
    REQUIRE(toy.images.size() == 1);  // one forward of 2N: [image; zeros]
    CHECK(toy.images[0] == [&] {
      std::vector<double> v(img.begin(), img.end());
      v.resize(16, 0.0);
      return v;
    }());
    for (std::size_t i = 0; i < cond.size(); ++i) CHECK(g[static_cast<index_t>(i)] == uncond[i] + w * (cond[i] - uncond[i]));
  }
  // drop_condition_image = false: only the labels are dropped.
  {
    const auto cond = call(labels, img), uncond = call(nulls, img);
    auto guided = make_guidance<double>(model, labels, {.scale = w, .null_label = 9, .drop_condition_image = false},
                                        img.cview());
    const auto g = guided(x.cview(), t);
    for (std::size_t i = 0; i < cond.size(); ++i) CHECK(g[static_cast<index_t>(i)] == uncond[i] + w * (cond[i] - uncond[i]));
  }
  // Scale 1: the conditional model alone, the image fixed through a sampling loop.
  DDIMSampler<double> sampler;
  sampler.set_timesteps(4);
  auto plain = make_guidance<double>(model, {}, {}, img.cview());
  toy.images.clear();
  const auto out = sample_loop(sampler, plain, x.cview());
  CHECK(out.shape() == x.shape());
  REQUIRE(toy.images.size() == 4);
  for (const auto& seen : toy.images) CHECK(seen == std::vector<double>(img.begin(), img.end()));
  // Errors: a condition image for another batch; an image for a labels-only model.
  Tensor<double> three({3, 1, 2, 2}, 0.5);
  auto wrong = make_guidance<double>(model, {}, {.scale = 2.0}, three.cview());
  CHECK_THROWS_WITH(wrong(x.cview(), t), Catch::Contains("condition image [3, 1, 2, 2] for a batch of 2"));
  std::vector<index_t> batches;
  std::vector<std::int64_t> seen;
  CHECK_THROWS_WITH(make_guidance<double>(LabelEcho{&batches, &seen, {}}, {1, 2}, {}, img.cview()),
                    Catch::Contains("class labels only"));
}

TEST_CASE("sdedit enters at the matching noise level and recovers the data", "[sampling][sdedit]") {
  DDIMConfig cfg;
  cfg.clipping.clip_sample = false;
  DDIMSampler<double> sampler(cfg);
  sampler.set_timesteps(50);
  const auto& sched = sampler.schedule();
  // Noise levels grow with t; the entry is the closest listed one.
  CHECK(noise_level(sched, 10) < noise_level(sched, 100));
  const index_t entry = sdedit_entry_index(sched, sampler.timesteps(), 0.5);
  // With the exact model of a point mass, DDIM from the entry lands on the point.
  Tensor<double> target({1, 4}, std::vector<double>{0.5, -0.25, 0.75, -1.0});
  Tensor<double> noisy({1, 4});
  Rng rng(3);
  rng.fill_normal(noisy.span(), 0.0, 0.5);
  for (index_t i = 0; i < 4; ++i) noisy[i] += target[i];
  int calls = 0;
  PointMassModel model{&sched, target.cview(), &calls, {}};
  const auto clean = sdedit(sampler, model, noisy.cview(), 0.5);
  for (index_t i = 0; i < 4; ++i) CHECK(clean[i] == Approx(target[i]).margin(1e-9));
  CHECK(calls == 50 - entry);
  CHECK_THROWS_WITH(sdedit(sampler, model, noisy.cview(), -1.0), Catch::Contains("sigma"));
}

TEST_CASE("sdedit's entry is the closest timestep", "[sampling][sdedit]") {
  DDPMSampler<double> sampler;
  sampler.set_timesteps(100);
  const auto& sched = sampler.schedule();
  for (double sigma : {0.05, 0.2, 0.5, 1.0, 3.0}) {
    const index_t e = sdedit_entry_index(sched, sampler.timesteps(), sigma);
    const double best = std::abs(std::log(noise_level(sched, static_cast<index_t>(sampler.timesteps()[static_cast<std::size_t>(e)]))) - std::log(sigma));
    for (double t : sampler.timesteps())
      CHECK(best <= std::abs(std::log(noise_level(sched, static_cast<index_t>(t))) - std::log(sigma)) + 1e-12);
  }
}

TEST_CASE("repaint keeps the known pixels and fills the rest from the model", "[sampling][inpaint]") {
  DDPMConfig cfg;
  cfg.clipping.clip_sample = false;
  DDPMSampler<double> sampler(cfg);
  sampler.set_timesteps(20);
  // The model knows only the point `fill`; the known image is elsewhere.
  Tensor<double> fill({2, 1, 2, 2}, std::vector<double>{0.3, 0.3, 0.3, 0.3, -0.6, -0.6, -0.6, -0.6});
  Tensor<double> known({2, 1, 2, 2}, std::vector<double>{1, -1, 1, -1, 0.5, 0.5, 0.5, 0.5});
  Tensor<double> mask({1, 1, 2, 2}, std::vector<double>{1, 1, 0, 0});  // top row known, bottom row filled
  Tensor<double> noise({2, 1, 2, 2});
  Rng rng(5);
  rng.fill_normal(noise.span());
  int calls = 0;
  PointMassModel model{&sampler.schedule(), fill.cview(), &calls, {}};
  index_t progress_calls = 0;
  const auto out = repaint(sampler, model, known.cview(), mask.cview(), noise.cview(), rng, {.resample = 3},
                           [&](index_t, index_t, double) { ++progress_calls; });
  for (index_t i = 0; i < out.numel(); ++i) {
    if (mask[i % 4] > 0.5)
      CHECK(out[i] == Approx(known[i]).margin(1e-12));
    else
      CHECK(out[i] == Approx(fill[i]).margin(1e-6));
  }
  // resample - 1 extra evaluations on every step but the last.
  CHECK(calls == 19 * 3 + 1);
  CHECK(progress_calls == 20);
}

TEST_CASE("repaint checks its inputs", "[sampling][inpaint][errors]") {
  DDIMSampler<double> sampler;
  sampler.set_timesteps(5);
  Tensor<double> img({1, 1, 2, 2}), noise({1, 1, 2, 2}), bad_mask({1, 3}), over({1, 1, 2, 2}, 2.0);
  Rng rng(1);
  int calls = 0;
  PointMassModel model{&sampler.schedule(), img.cview(), &calls, {}};
  CHECK_THROWS_WITH(repaint(sampler, model, img.cview(), bad_mask.cview(), noise.cview(), rng), Catch::Contains("mask"));
  CHECK_THROWS_WITH(repaint(sampler, model, img.cview(), over.cview(), noise.cview(), rng), Catch::Contains("[0, 1]"));
  CHECK_THROWS_WITH(repaint(sampler, model, img.cview(), img.cview(), noise.cview(), rng, {.resample = 0}),
                    Catch::Contains("resample"));
}
