#pragma once
// Classifier-free guidance (Ho & Salimans 2022) as a wrapper around a
// conditional model callable: class-conditional (LabelModel) or given the
// whole Conditioning (ConditionedModel: labels and a condition image). The
// sampler and the sampling loop are unchanged: they see an ordinary model
// callable (x_t, t) -> prediction, with the condition fixed through the loop.
//
//   auto unet_fn = [&](ConstTensorView<float> x, double t, std::span<const std::int64_t> labels) {
//     return unet.forward(x, t, labels);
//   };
//   ClassifierFreeGuidance<float, decltype(unet_fn)> guided(unet_fn, labels, {.scale = 3.0, .null_label = 10});
//   ... sampler.step(guided(x, t), t, x, rng) ...
//
// An image-conditioned model (SR3 / Palette: Conditioning::image, concatenated
// to the input channels by the network) samples with its condition fixed:
//
//   auto guided = make_guidance<float>(conditioned_model<float>(unet), {}, {.scale = 2.0}, low_res.cview());
//   auto x0 = sample_loop(sampler, guided, noise.cview(), rng);
//
// One call evaluates the model once on a batch of 2N: the N inputs with
// their labels (and condition image) and the same N inputs with the null
// label (and, with drop_condition_image, zeros in place of the image: the
// "no condition" that train::TrainConfig::condition_dropout trains), then returns
//   uncond + scale * (cond - uncond)                          (eq. 6 of the paper, w = scale - 1)
// scale 1 is the plain conditional model (one forward of N), scale 0 the
// unconditional one. The model must have been trained with label dropout to
// `null_label` (train::TrainConfig::label_dropout / null_label), or
// condition dropout for the image.
//
// guidance_rescale > 0 (Lin et al. 2023, section 3.4) rescales the guided
// prediction's per-sample standard deviation towards the conditional one's,
// which counters over-saturation at large scales.
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/core/model.hpp"

namespace ddpm {

// A class-conditional model callable: (x [N, ...], t, labels [N]) -> prediction [N, ...].
template <class F, class T>
concept LabelModel = requires(F& f, ConstTensorView<T> x, double t, std::span<const std::int64_t> labels) {
  { f(x, t, labels) } -> std::convertible_to<ConstTensorView<T>>;
};

// A model callable given the whole conditioning: (x [N, ...], t, Conditioning<T>) -> prediction [N, ...].
template <class F, class T>
concept ConditionedModel = requires(F& f, ConstTensorView<T> x, double t, const Conditioning<T>& c) {
  { f(x, t, c) } -> std::convertible_to<ConstTensorView<T>>;
};

// Adapts any Denoiser to a ConditionedModel.
template <Scalar T, Denoiser<T> M>
auto conditioned_model(M& model) {
  return [&model, t_buf = std::vector<T>()](ConstTensorView<T> x, double t,
                                            const Conditioning<T>& c) mutable -> ConstTensorView<T> {
    t_buf.assign(static_cast<std::size_t>(x.dim(0)), static_cast<T>(t));
    return model.forward(x, std::span<const T>(t_buf), c);
  };
}

// Adapts any Denoiser (forward(x, span<const T> t, Conditioning)) to a LabelModel.
template <Scalar T, Denoiser<T> M>
auto label_model(M& model) {
  return [&model, t_buf = std::vector<T>()](ConstTensorView<T> x, double t,
                                            std::span<const std::int64_t> labels) mutable -> ConstTensorView<T> {
    t_buf.assign(static_cast<std::size_t>(x.dim(0)), static_cast<T>(t));
    Conditioning<T> c;
    c.class_labels = labels;
    return model.forward(x, std::span<const T>(t_buf), c);
  };
}

struct GuidanceConfig {
  double scale = 1.0;             // 1: conditional only; > 1: stronger conditioning
  std::int64_t null_label = -1;   // the label the model was trained with for "no label"
  double guidance_rescale = 0.0;  // in [0, 1]; 0: off
  // The unconditional prediction sees zeros in place of the condition image
  // (the model was trained with condition_dropout); false: the image is kept
  // and only the labels are dropped.
  bool drop_condition_image = true;

  // has_labels: whether the guidance has class labels to drop (the null
  // label is needed only then).
  void validate(bool has_labels = true) const {
    require(std::isfinite(scale), "guidance scale must be finite, got ", scale);
    require(scale == 1.0 || !has_labels || null_label >= 0,
            "classifier-free guidance with scale ", scale, " needs the null label (the class index the model was",
            " trained with for 'no label')");
    require(guidance_rescale >= 0 && guidance_rescale <= 1, "guidance_rescale must be in [0, 1], got ",
            guidance_rescale);
  }
};

template <Scalar T, class Model>
  requires LabelModel<Model, T> || ConditionedModel<Model, T>
class ClassifierFreeGuidance {
 public:
  // labels: N class labels, or empty for a ConditionedModel without them;
  // condition_image: [N, C_cond, H, W] (copied; a ConditionedModel only) or empty.
  ClassifierFreeGuidance(Model model, std::vector<std::int64_t> labels, GuidanceConfig config,
                         ConstTensorView<T> condition_image = {})
      : model_(std::move(model)), labels_(std::move(labels)), config_(config) {
    if constexpr (!ConditionedModel<Model, T>)
      require(condition_image.data() == nullptr, "classifier-free guidance: a condition image was given, but the",
              " model takes class labels only (wrap a Denoiser with conditioned_model)");
    set_condition_image(condition_image);
    config_.validate(has_labels());
  }

  const GuidanceConfig& config() const { return config_; }
  std::span<const std::int64_t> labels() const { return labels_; }
  void set_labels(std::vector<std::int64_t> labels) { labels_ = std::move(labels); }
  void set_scale(double scale) {
    config_.scale = scale;
    config_.validate(has_labels());
  }
  // The condition image (copied), or empty for none.
  void set_condition_image(ConstTensorView<T> image) {
    has_image_ = image.data() != nullptr;
    if (!has_image_) return;
    image_.resize(image.shape());
    std::copy(image.begin(), image.end(), image_.begin());
  }
  ConstTensorView<T> condition_image() const { return has_image() ? image_.cview() : ConstTensorView<T>{}; }

  // The guided prediction for x [N, ...] at t: a view valid until the next call.
  ConstTensorView<T> operator()(ConstTensorView<T> x, double t) {
    const index_t batch = x.rank() >= 1 ? x.dim(0) : 0;
    require(x.rank() >= 1 && (static_cast<std::size_t>(x.dim(0)) == labels_.size() || !needs_labels()),
            "classifier-free guidance: ", labels_.size(), " labels for a batch of ", batch);
    require(!has_image() || image_.dim(0) == batch, "classifier-free guidance: condition image ",
            image_.shape().str(), " for a batch of ", batch);
    if (config_.scale == 1.0) return call(x, t, labels_, condition_image());
    const index_t n = x.dim(0), per = x.numel() / std::max<index_t>(n, 1);
    Shape doubled = x.shape();
    doubled[0] = 2 * n;
    if (!(batch_.shape() == doubled)) batch_.resize(doubled);
    std::copy(x.begin(), x.end(), batch_.begin());
    std::copy(x.begin(), x.end(), batch_.begin() + n * per);
    batch_labels_.assign(labels_.begin(), labels_.end());
    if (has_labels()) batch_labels_.resize(static_cast<std::size_t>(2 * n), config_.null_label);
    ConstTensorView<T> image;
    if (has_image()) {
      // [image; zeros] (or [image; image] when the image is kept).
      Shape ds = image_.shape();
      ds[0] = 2 * n;
      if (!(batch_image_.shape() == ds)) batch_image_.resize(ds);
      std::copy(image_.begin(), image_.end(), batch_image_.begin());
      if (config_.drop_condition_image)
        std::fill(batch_image_.begin() + image_.numel(), batch_image_.end(), T{});
      else
        std::copy(image_.begin(), image_.end(), batch_image_.begin() + image_.numel());
      image = batch_image_.cview();
    }
    const ConstTensorView<T> both = call(batch_.cview(), t, batch_labels_, image);
    require(both.numel() == 2 * n * per, "classifier-free guidance: the model returned ", both.shape().str(),
            " for an input of ", doubled.str());
    if (!(out_.shape() == x.shape())) out_.resize(x.shape());
    const T w = static_cast<T>(config_.scale);
    for (index_t i = 0; i < n * per; ++i) out_[i] = both[n * per + i] + w * (both[i] - both[n * per + i]);
    if (config_.guidance_rescale > 0) rescale(both, n, per);
    return out_.cview();
  }

 private:
  // Lin et al. 2023, eq. 15-16, per batch element.
  void rescale(ConstTensorView<T> both, index_t n, index_t per) {
    const auto stddev = [per](const T* p) {
      double mean = 0, sq = 0;
      for (index_t j = 0; j < per; ++j) mean += p[j];
      mean /= static_cast<double>(per);
      for (index_t j = 0; j < per; ++j) sq += (p[j] - mean) * (p[j] - mean);
      return std::sqrt(sq / static_cast<double>(std::max<index_t>(per - 1, 1)));
    };
    const double phi = config_.guidance_rescale;
    for (index_t i = 0; i < n; ++i) {
      T* g = out_.data() + i * per;
      const double s_cond = stddev(both.data() + i * per), s_cfg = stddev(g);
      if (s_cfg <= 0) continue;
      const T factor = static_cast<T>(phi * s_cond / s_cfg + (1.0 - phi));
      for (index_t j = 0; j < per; ++j) g[j] *= factor;
    }
  }

  bool has_labels() const { return !labels_.empty(); }
  bool has_image() const { return has_image_; }
  // A LabelModel needs one label per batch element; a ConditionedModel may have none.
  bool needs_labels() const { return !ConditionedModel<Model, T> || has_labels(); }

  ConstTensorView<T> call(ConstTensorView<T> x, double t, const std::vector<std::int64_t>& labels,
                          ConstTensorView<T> image) {
    if constexpr (ConditionedModel<Model, T>) {
      Conditioning<T> c;
      c.class_labels = labels;
      c.image = image;
      return model_(x, t, c);
    } else {
      return model_(x, t, std::span<const std::int64_t>(labels));
    }
  }

  Model model_;
  std::vector<std::int64_t> labels_, batch_labels_;
  GuidanceConfig config_;
  bool has_image_ = false;
  Tensor<T> image_, batch_image_, batch_, out_;
};

template <Scalar T, class Model>
  requires LabelModel<Model, T> || ConditionedModel<Model, T>
ClassifierFreeGuidance<T, Model> make_guidance(Model model, std::vector<std::int64_t> labels, GuidanceConfig config,
                                               ConstTensorView<T> condition_image = {}) {
  return {std::move(model), std::move(labels), config, condition_image};
}

}  // namespace ddpm
