#pragma once
// diffusers' VectorQuantizer (legacy = True, beta = 0.25), as VQModel uses it.
// On z [N, D, h, w] with the codebook E [K, D] ("<prefix>.embedding.weight"):
//   index(n, i, j) = argmin_k |z[n, :, i, j] - E[k]|^2   (ties: lowest k)
//   e = E[index]                                          (quantized(), NCHW)
//   z_q = z + (e - z)                                     (straight-through; forward value e up to rounding)
//   commit_loss = mean((e - z)^2) + beta mean((e - z)^2)  (legacy: beta on the codebook term)
// Backward (diffusers' gradient flow): dL/dz = dL/dz_q (identity through the
// quantizer) + dL/dloss 2 (z - e) / M; the codebook gets only the beta term,
// dL/dE[k] += dL/dloss beta 2 (e - z) / M summed over the positions that chose
// k (unused codes: zero rows); M = z.numel(). The argmin has no gradient.
// Distances are accumulated in double, element by element (not the expanded
// |z|^2 + |e|^2 - 2 z.e form), so near ties resolve as exactly as possible.
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/init.hpp"
#include "ddpm/nn/layer_base.hpp"
#include "ddpm/core/parameters.hpp"

namespace ddpm::nn {

template <Scalar T, backend::Backend B>
class VectorQuantizer : public LayerBase {
 public:
  using Buffer = Tensor<T, typename B::memory_space>;

  VectorQuantizer(Parameters<T>& params, const std::string& prefix, index_t num_codes, index_t dim,
                  double beta = 0.25)
      : LayerBase(prefix), params_(&params), k_(num_codes), d_(dim), beta_(beta) {
    check(num_codes > 0 && dim > 0, "num_codes and dim must be > 0, got ", num_codes, " and ", dim);
    weight_ = params.add(join_name(prefix, "embedding.weight"), {num_codes, dim});
  }

  // z [N, D, h, w] -> z_q (same shape). indices(), quantized() and commit_loss() describe it.
  ConstTensorView<T> forward(ConstTensorView<T> z) {
    check(z.rank() == 4 && z.dim(1) == d_, "expected latents [N, ", d_, ", h, w], got ", z.shape().str());
    const index_t N = z.dim(0), HW = z.dim(2) * z.dim(3);
    const ConstTensorView<T> E = codebook();
    indices_.assign(static_cast<std::size_t>(N * HW), 0);
    ensure_shape(e_, z.shape());
    ensure_shape(zq_, z.shape());
    double sq = 0;
    for (index_t n = 0; n < N; ++n)
      for (index_t s = 0; s < HW; ++s) {
        double best = std::numeric_limits<double>::infinity();
        index_t arg = 0;
        for (index_t k = 0; k < k_; ++k) {
          double dist = 0;
          for (index_t c = 0; c < d_; ++c) {
            const double diff = static_cast<double>(z[(n * d_ + c) * HW + s]) - static_cast<double>(E[k * d_ + c]);
            dist += diff * diff;
          }
          if (dist < best) best = dist, arg = k;
        }
        indices_[static_cast<std::size_t>(n * HW + s)] = arg;
        for (index_t c = 0; c < d_; ++c) {
          const index_t at = (n * d_ + c) * HW + s;
          const T e = E[arg * d_ + c], zv = z[at];
          e_[at] = e;
          zq_[at] = zv + (e - zv);
          sq += static_cast<double>(e - zv) * static_cast<double>(e - zv);
        }
      }
    // diffusers: mean((e - z)^2) + beta mean((e - z)^2), each mean in T.
    const T m = static_cast<T>(sq / static_cast<double>(z.numel()));
    loss_ = m + static_cast<T>(beta_) * m;
    z_ = mode_ == Mode::Training ? z : ConstTensorView<T>{};
    idx_shape_ = {N, z.dim(2), z.dim(3)};
    return zq_.view();
  }

  // dzq: dL/dz_q (or empty); dloss: dL/d(commit_loss). Returns dL/dz and
  // accumulates the codebook gradient.
  ConstTensorView<T> backward(ConstTensorView<T> dzq, T dloss = T{1}) {
    check_backward(z_.data() != nullptr);
    if (dzq.data()) check_shape("output gradient", dzq.shape(), zq_.shape());
    const index_t N = z_.dim(0), HW = z_.dim(2) * z_.dim(3);
    const T scale = dloss * T{2} / static_cast<T>(z_.numel());
    ensure_shape(dz_, z_.shape());
    const TensorView<T> dE = params_->grad(weight_);
    for (index_t n = 0; n < N; ++n)
      for (index_t s = 0; s < HW; ++s) {
        const index_t k = indices_[static_cast<std::size_t>(n * HW + s)];
        for (index_t c = 0; c < d_; ++c) {
          const index_t at = (n * d_ + c) * HW + s;
          const T diff = z_[at] - e_[at];
          dz_[at] = (dzq.data() ? dzq[at] : T{0}) + scale * diff;
          dE[k * d_ + c] -= static_cast<T>(beta_) * scale * diff;
        }
      }
    return dz_.view();
  }

  // diffusers' VectorQuantizer init: U(-1/K, 1/K).
  void init(Rng& rng) { init_uniform(params_->value(weight_), 1.0 / static_cast<double>(k_), rng); }

  // The codes of the last forward, [N, h, w] n-major (int64, as diffusers returns them).
  std::span<const std::int64_t> indices() const { return indices_; }
  const Shape& indices_shape() const { return idx_shape_; }
  // The chosen code vectors E[index], NCHW (exactly the codebook rows).
  ConstTensorView<T> quantized() const { return e_.view(); }
  T commit_loss() const { return loss_; }

  // diffusers' get_codebook_entry: E[indices] as NCHW [N, D, h, w]; indices
  // n-major [N, h, w]. An index outside [0, K) is a ddpm::Error.
  ConstTensorView<T> lookup(std::span<const std::int64_t> indices, index_t N, index_t h, index_t w) {
    check(static_cast<index_t>(indices.size()) == N * h * w, "lookup: ", indices.size(), " indices for a [", N, ", ",
          h, ", ", w, "] grid");
    const ConstTensorView<T> E = codebook();
    ensure_shape(lookup_, {N, d_, h, w});
    const index_t HW = h * w;
    for (index_t n = 0; n < N; ++n)
      for (index_t s = 0; s < HW; ++s) {
        const std::int64_t k = indices[static_cast<std::size_t>(n * HW + s)];
        check(k >= 0 && k < k_, "codebook index ", k, " at position ", n * HW + s, " is out of range [0, ", k_, ")");
        for (index_t c = 0; c < d_; ++c) lookup_[(n * d_ + c) * HW + s] = E[k * d_ + c];
      }
    return lookup_.view();
  }

  index_t num_codes() const { return k_; }
  index_t dim() const { return d_; }
  ParamId weight_id() const { return weight_; }
  ConstTensorView<T> codebook() const { return std::as_const(*params_).value(weight_); }

 private:
  Parameters<T>* params_;
  index_t k_, d_;
  double beta_;
  ParamId weight_ = -1;
  std::vector<std::int64_t> indices_;
  Shape idx_shape_;
  T loss_{};
  ConstTensorView<T> z_;
  Buffer e_, zq_, dz_, lookup_;
};

}  // namespace ddpm::nn
