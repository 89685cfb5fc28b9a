#pragma once
// The smallest models that satisfy Denoiser, for tests of the training
// step (train/, hardening/, mpi/): fast, deterministic, with both kinds of
// conditioning.
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/core/model.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/train/trainer.hpp"

namespace ddpm::test {

// y = W [x + v, t / 1000] + b + E[label]: a tiny Denoiser that uses both
// kinds of conditioning, so sharding them is tested too.
template <Scalar T>
class Toy {
 public:
  // classes = 0: no class embedding (labels must then be absent).
  explicit Toy(index_t dim, index_t classes = 0, std::uint64_t seed = 1)
      : params_(std::make_unique<Parameters<T>>()), lin_(*params_, "lin", dim + 1, dim), dim_(dim) {
    if (classes > 0) emb_ = params_->add("emb", {classes, dim});
    Rng rng(seed);
    lin_.init(rng);
    if (classes > 0)
      for (auto& e : params_->value(emb_)) e = static_cast<T>(0.1 * rng.normal());
  }
  Parameters<T>& parameters() { return *params_; }
  ConstTensorView<T> forward(ConstTensorView<T> x, std::span<const T> t, const Conditioning<T>& c) {
    const index_t n = x.dim(0), d = dim_;
    in_.resize({n, d + 1});
    for (index_t i = 0; i < n; ++i) {
      for (index_t j = 0; j < d; ++j) in_[i * (d + 1) + j] = x[i * d + j] + (c.vector.data() ? c.vector[i * d + j] : T(0));
      in_[i * (d + 1) + d] = t[static_cast<std::size_t>(i)] / T(1000);
    }
    const auto y = lin_.forward(in_.cview());
    labels_.assign(c.class_labels.begin(), c.class_labels.end());
    out_.resize({n, d});
    const auto emb = emb_ >= 0 ? params_->value(emb_) : ConstTensorView<T>{};
    require(labels_.empty() || emb_ >= 0, "Toy: class labels given to a model without class embedding");
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < d; ++j)
        out_[i * d + j] = y[i * d + j] + (labels_.empty() ? T(0) : emb[labels_[static_cast<std::size_t>(i)] * d + j]);
    return out_.cview();
  }
  ConstTensorView<T> backward(ConstTensorView<T> dy) {
    const index_t n = dy.dim(0), d = dim_;
    if (!labels_.empty()) {
      auto g = params_->grad(emb_);
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < d; ++j) g[labels_[static_cast<std::size_t>(i)] * d + j] += dy[i * d + j];
    }
    const auto din = lin_.backward(dy);
    dx_.resize({n, d});
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < d; ++j) dx_[i * d + j] = din[i * (d + 1) + j];
    return dx_.cview();
  }

 private:
  std::unique_ptr<Parameters<T>> params_;
  nn::Linear<T, backend::Reference> lin_;
  ParamId emb_ = -1;
  index_t dim_;
  std::vector<std::int64_t> labels_;
  Tensor<T> in_, out_, dx_;
};

// Smooth [n, d] training data with a little noise, for the toy models.
template <Scalar T>
Tensor<T> toy_data(index_t n, index_t d, std::uint64_t seed) {
  Tensor<T> x({n, d});
  Rng rng(seed);
  for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<T>(0.5 * std::sin(static_cast<double>(i)) + 0.1 * rng.normal());
  return x;
}

// A training set-up that learns the toy data within a few dozen steps.
inline train::TrainConfig toy_train_config(std::uint64_t seed = 3) {
  train::TrainConfig c;
  c.lr = {.base_lr = 1e-2, .warmup_steps = 5, .total_steps = 100, .min_lr = 1e-3};
  c.seed = seed;
  c.ema_decay = 0.99;
  return c;
}

}  // namespace ddpm::test
