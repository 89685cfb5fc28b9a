#pragma once
// A small CNN digit classifier, built from the library's layers and trained
// with its Adam and softmax cross-entropy. mnist_diffusion uses it to
// measure samples: the fraction classified as the requested digit, and the
// Frechet distance between its 128-d features of samples and of real digits.
//
//   conv 1->16 3x3, SiLU              28x28
//   conv 16->32 3x3 stride 2, SiLU    14x14
//   conv 32->32 3x3 stride 2, SiLU    7x7
//   linear 1568->128, SiLU            features
//   linear 128->10                    logits
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/io/state_dict.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/train/adam.hpp"
#include "ddpm/train/lr_schedule.hpp"
#include "../common/progress.hpp"
#include "cross_entropy.hpp"
#include "mnist_data.hpp"

namespace mnist {

class Classifier {
  using B = ddpm::backend::Cpu;

 public:
  static constexpr int kFeatures = 128;

  Classifier()
      : params_(std::make_unique<ddpm::Parameters<float>>()),
        conv1_(*params_, "conv1", 1, 16, 3, 1, 1), conv2_(*params_, "conv2", 16, 32, 3, 2, 1),
        conv3_(*params_, "conv3", 32, 32, 3, 2, 1), fc1_(*params_, "fc1", 32 * 7 * 7, kFeatures),
        fc2_(*params_, "fc2", kFeatures, kNumClasses) {}

  ddpm::Parameters<float>& parameters() { return *params_; }

  void init(ddpm::Rng& rng) {
    conv1_.init(rng), conv2_.init(rng), conv3_.init(rng), fc1_.init(rng), fc2_.init(rng);
  }
  void set_mode(ddpm::nn::Mode m) {
    for (auto* l : std::initializer_list<ddpm::nn::LayerBase*>{&conv1_, &conv2_, &conv3_, &fc1_, &fc2_, &a1_, &a2_,
                                                               &a3_, &a4_})
      l->set_mode(m);
  }

  // x [N, 1, 28, 28] in [-1, 1] -> logits [N, 10].
  ddpm::ConstTensorView<float> forward(ddpm::ConstTensorView<float> x) {
    auto h = a3_.forward(conv3_.forward(a2_.forward(conv2_.forward(a1_.forward(conv1_.forward(x))))));
    features_ = a4_.forward(fc1_.forward(h.reshape({x.dim(0), 32 * 7 * 7})));
    return fc2_.forward(features_);
  }
  // The 128-d features of the last forward.
  ddpm::ConstTensorView<float> features() const { return features_; }

  void backward(ddpm::ConstTensorView<float> dlogits) {
    auto g = fc1_.backward(a4_.backward(fc2_.backward(dlogits)));
    auto g4 = g.reshape({g.dim(0), 32, 7, 7});
    conv1_.backward(a1_.backward(conv2_.backward(a2_.backward(conv3_.backward(a3_.backward(g4))))));
  }

  void save(const fs::path& path) const { ddpm::io::state_dict_writer(*params_).save(path); }
  void load(const fs::path& path) { ddpm::io::load_state_dict(*params_, ddpm::io::SafeTensors::load(path)); }

 private:
  std::unique_ptr<ddpm::Parameters<float>> params_;
  ddpm::nn::Conv2d<float, B> conv1_, conv2_, conv3_;
  ddpm::nn::Linear<float, B> fc1_, fc2_;
  ddpm::nn::SiLU<float, B> a1_{"a1"}, a2_{"a2"}, a3_{"a3"}, a4_{"a4"};
  ddpm::ConstTensorView<float> features_;
};

// Shifts each image by a random offset in [-max_shift, max_shift] pixels
// (background -1 fills): a cheap augmentation.
inline void random_shift(ddpm::Tensor<float>& x, ddpm::Rng& rng, int max_shift) {
  std::vector<float> tmp(kPixels);
  for (ddpm::index_t i = 0; i < x.dim(0); ++i) {
    const int dx = static_cast<int>(rng.uniform_int(2 * max_shift + 1)) - max_shift;
    const int dy = static_cast<int>(rng.uniform_int(2 * max_shift + 1)) - max_shift;
    float* img = x.data() + i * kPixels;
    constexpr int n = kImageSide;
    for (int y = 0; y < n; ++y)
      for (int c = 0; c < n; ++c) {
        const int sy = y - dy, sx = c - dx;
        tmp[static_cast<std::size_t>(y * n + c)] = sy >= 0 && sy < n && sx >= 0 && sx < n ? img[sy * n + sx] : -1.f;
      }
    std::copy(tmp.begin(), tmp.end(), img);
  }
}

// Classifies `images` in batches; returns the predicted labels and fills
// `features` [N, 128] when it is given.
inline std::vector<std::int64_t> classify(Classifier& net, ddpm::ConstTensorView<float> images,
                                          ddpm::Tensor<float>* features = nullptr) {
  net.set_mode(ddpm::nn::Mode::Inference);
  const ddpm::index_t n = images.dim(0), bs = 256;
  std::vector<std::int64_t> pred(static_cast<std::size_t>(n));
  if (features) features->resize({n, Classifier::kFeatures});
  for (ddpm::index_t first = 0; first < n; first += bs) {
    const ddpm::index_t count = std::min(bs, n - first);
    const auto logits = net.forward(images.slice(first, count));
    for (ddpm::index_t i = 0; i < count; ++i)
      pred[static_cast<std::size_t>(first + i)] = argmax_row(logits, i);
    if (features) {
      const auto f = net.features();
      std::copy(f.begin(), f.end(), features->data() + first * Classifier::kFeatures);
    }
  }
  return pred;
}

inline double accuracy(std::span<const std::int64_t> pred, std::span<const std::int64_t> truth) {
  std::size_t ok = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) ok += pred[i] == truth[i];
  return pred.empty() ? 0.0 : static_cast<double>(ok) / static_cast<double>(pred.size());
}

struct ClassifierTrainOptions {
  int epochs = 4;
  ddpm::index_t batch = 64;
  double lr = 2e-3;
  std::uint64_t seed = 0;
  int max_shift = 2;  // augmentation: random shifts of up to this many pixels
};

// Adam with cosine decay on the training split, shifted by up to max_shift pixels.
inline void train_classifier(Classifier& net, const Dataset& train, const ClassifierTrainOptions& o) {
  ddpm::Rng rng(o.seed, 7);
  net.init(rng);
  auto& params = net.parameters();
  const std::int64_t steps_per_epoch = train.size() / o.batch, total = steps_per_epoch * o.epochs;
  ddpm::train::Adam<float> adam(params.numel(), {});
  const ddpm::train::LrSchedule lr{
      .base_lr = o.lr, .warmup_steps = std::min<std::int64_t>(50, total / 10), .total_steps = total, .min_lr = o.lr * 0.02};
  std::vector<ddpm::index_t> perm(static_cast<std::size_t>(train.size()));
  ddpm::Tensor<float> x, dlogits;
  std::vector<std::int64_t> labels;
  examples::Progress bar("classifier", total);
  double smooth = -1;
  std::int64_t step = 0;
  for (int e = 0; e < o.epochs; ++e) {
    for (std::size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<ddpm::index_t>(i);
    for (std::size_t i = perm.size() - 1; i > 0; --i) std::swap(perm[i], perm[rng.uniform_int(i + 1)]);
    for (std::int64_t s = 0; s < steps_per_epoch; ++s, ++step) {
      gather(train, std::span<const ddpm::index_t>(perm).subspan(static_cast<std::size_t>(s * o.batch),
                                                                  static_cast<std::size_t>(o.batch)),
             x, labels);
      if (o.max_shift > 0) random_shift(x, rng, o.max_shift);
      net.set_mode(ddpm::nn::Mode::Training);
      params.zero_grad();
      const auto logits = net.forward(x.cview());
      dlogits.resize(logits.shape());
      const double loss = softmax_cross_entropy(logits, labels, dlogits.view());
      net.backward(dlogits.cview());
      adam.step(params.values(), params.grads(), lr(step));
      smooth = smooth < 0 ? loss : 0.95 * smooth + 0.05 * loss;
      bar.update(step + 1, smooth);
    }
  }
  bar.finish();
}

// Eigen-decomposition of a symmetric matrix (row-major n x n) by cyclic
// Jacobi rotations: returns the eigenvalues, and the eigenvectors as the
// columns of `vectors`. Plenty for the 128 x 128 covariances here.
inline std::vector<double> symmetric_eigen(std::vector<double> a, std::size_t n, std::vector<double>& vectors) {
  vectors.assign(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i) vectors[i * n + i] = 1.0;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0, total = 0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) (i == j ? total : off) += a[i * n + j] * a[i * n + j];
    if (off <= 1e-24 * (total + off) || off == 0) break;
    for (std::size_t p = 0; p + 1 < n; ++p)
      for (std::size_t q = p + 1; q < n; ++q) {
        const double apq = a[p * n + q];
        if (std::abs(apq) < 1e-300) continue;
        const double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (std::size_t k = 0; k < n; ++k) {  // A <- A J (columns p, q)
          const double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq, a[k * n + q] = s * akp + c * akq;
        }
        for (std::size_t k = 0; k < n; ++k) {  // A <- J^T A (rows p, q)
          const double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk, a[q * n + k] = s * apk + c * aqk;
        }
        for (std::size_t k = 0; k < n; ++k) {  // V <- V J
          const double vkp = vectors[k * n + p], vkq = vectors[k * n + q];
          vectors[k * n + p] = c * vkp - s * vkq, vectors[k * n + q] = s * vkp + c * vkq;
        }
      }
  }
  std::vector<double> values(n);
  for (std::size_t i = 0; i < n; ++i) values[i] = a[i * n + i];
  return values;
}

// Frechet distance between Gaussians fitted to two feature sets [N, D]
// (the FID formula, Heusel et al. 2017, on this classifier's features):
//   |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)
inline double frechet_distance(ddpm::ConstTensorView<float> a, ddpm::ConstTensorView<float> b) {
  const auto d = static_cast<std::size_t>(a.dim(1));
  ddpm::require(b.dim(1) == a.dim(1) && a.dim(0) > 1 && b.dim(0) > 1, "frechet_distance: feature sets ",
                a.shape().str(), " and ", b.shape().str(), " do not match");
  const auto stats = [d](ddpm::ConstTensorView<float> f, std::vector<double>& mu, std::vector<double>& cov) {
    const auto n = static_cast<std::size_t>(f.dim(0));
    mu.assign(d, 0.0);
    cov.assign(d * d, 0.0);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < d; ++j) mu[j] += f[static_cast<ddpm::index_t>(i * d + j)] / static_cast<double>(n);
    std::vector<double> c(d);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < d; ++j) c[j] = f[static_cast<ddpm::index_t>(i * d + j)] - mu[j];
      for (std::size_t j = 0; j < d; ++j)
        for (std::size_t k = 0; k < d; ++k) cov[j * d + k] += c[j] * c[k] / static_cast<double>(n - 1);
    }
  };
  const auto matmul = [d](const std::vector<double>& x, const std::vector<double>& y) {
    std::vector<double> z(d * d, 0.0);
    for (std::size_t i = 0; i < d; ++i)
      for (std::size_t k = 0; k < d; ++k)
        for (std::size_t j = 0; j < d; ++j) z[i * d + j] += x[i * d + k] * y[k * d + j];
    return z;
  };
  std::vector<double> mu1, mu2, s1, s2, v;
  stats(a, mu1, s1);
  stats(b, mu2, s2);
  // S1^1/2 = V diag(sqrt(lambda)) V^T (eigenvalues clamped at 0 against rounding).
  const auto lambda = symmetric_eigen(s1, d, v);
  std::vector<double> root(d * d, 0.0);
  for (std::size_t i = 0; i < d; ++i)
    for (std::size_t j = 0; j < d; ++j)
      for (std::size_t k = 0; k < d; ++k) root[i * d + j] += v[i * d + k] * std::sqrt(std::max(lambda[k], 0.0)) * v[j * d + k];
  auto m = matmul(matmul(root, s2), root);
  for (std::size_t i = 0; i < d; ++i)
    for (std::size_t j = 0; j < i; ++j) m[i * d + j] = m[j * d + i] = 0.5 * (m[i * d + j] + m[j * d + i]);
  double tr_sqrt = 0;
  for (double l : symmetric_eigen(m, d, v)) tr_sqrt += std::sqrt(std::max(l, 0.0));
  double dist = 0;
  for (std::size_t j = 0; j < d; ++j) dist += (mu1[j] - mu2[j]) * (mu1[j] - mu2[j]) + s1[j * d + j] + s2[j * d + j];
  return dist - 2.0 * tr_sqrt;
}

}  // namespace mnist
