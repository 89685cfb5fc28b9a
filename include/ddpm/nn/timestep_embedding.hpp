#pragma once
// The sinusoidal timestep embedding of DDPM (diffusers' Timesteps /
// get_timestep_embedding). For t[N] and dim:
//   half = dim / 2, freq_i = exp(-ln(max_period) * i / (half - freq_shift)),
//   emb = [sin(scale * t * freq), cos(scale * t * freq)]   ([cos, sin] when flip_sin_to_cos),
//   zero-padded by one column when dim is odd.
// t may be fractional. No parameters; not differentiable (no backward).
//
// Numerics::Diffusers (default) evaluates it in float32, as diffusers does even
// for a float64 model, then converts to T; Numerics::Exact evaluates in T.
#include <cmath>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/layer_base.hpp"
#include "ddpm/nn/numerics.hpp"

namespace ddpm::nn {

struct TimestepEmbeddingOptions {
  index_t dim = 0;
  bool flip_sin_to_cos = true;  // diffusers' UNet2DModel default (google/ddpm-*: false)
  double freq_shift = 0.0;      // downscale_freq_shift (google/ddpm-*: 1)
  double max_period = 10000.0;
  double scale = 1.0;
  Numerics numerics = Numerics::Diffusers;
};

template <Scalar T, backend::Backend B>
class SinusoidalTimestepEmbedding : public LayerBase {
 public:
  using Buffer = Tensor<T, typename B::memory_space>;

  explicit SinusoidalTimestepEmbedding(TimestepEmbeddingOptions opt, const std::string& prefix = "time_proj")
      : LayerBase(prefix), opt_(opt) {
    check(opt.dim > 0, "dim must be > 0, got ", opt.dim);
    check(opt.dim < 2 || static_cast<double>(opt.dim / 2) != opt.freq_shift, "freq_shift (", opt.freq_shift,
          ") must differ from dim / 2 (", opt.dim / 2, ")");
  }

  // t[N] -> [N, dim].
  ConstTensorView<T> forward(std::span<const double> t) {
    const auto n = static_cast<index_t>(t.size());
    ensure_shape(y_, {n, opt_.dim});
    if (opt_.numerics == Numerics::Diffusers || std::is_same_v<T, float>)
      compute<float>(t);
    else
      compute<T>(t);
    return y_.view();
  }
  // The same with t as a tensor of any shape (its elements in order).
  ConstTensorView<T> forward(ConstTensorView<T> t) {
    ensure_t(t.numel());
    for (index_t i = 0; i < t.numel(); ++i) t_[static_cast<std::size_t>(i)] = static_cast<double>(t[i]);
    return forward(std::span<const double>(t_));
  }
  ConstTensorView<T> forward(TensorView<T> t) { return forward(ConstTensorView<T>(t)); }

  void init(Rng&) {}
  const TimestepEmbeddingOptions& options() const { return opt_; }
  index_t dim() const { return opt_.dim; }

 private:
  void ensure_t(index_t n) {
    if (static_cast<index_t>(t_.size()) != n) t_.resize(static_cast<std::size_t>(n));
  }

  // Evaluates in U the way diffusers' torch ops do: each product, quotient and
  // function rounded to U (so, for float, float32 throughout like PyTorch).
  template <class U>
  void compute(std::span<const double> t) {
    const index_t half = opt_.dim / 2, dim = opt_.dim;
    const U neg_log = static_cast<U>(-std::log(opt_.max_period));
    const U denom = static_cast<U>(static_cast<double>(half) - opt_.freq_shift);
    const U scale = static_cast<U>(opt_.scale);
    T* y = y_.data();
    for (std::size_t r = 0; r < t.size(); ++r) {
      const U tr = static_cast<U>(t[r]);
      T* row = y + static_cast<index_t>(r) * dim;
      for (index_t i = 0; i < half; ++i) {
        const U exponent = static_cast<U>(neg_log * static_cast<U>(i)) / denom;
        const U freq = std::exp(exponent);
        U arg = static_cast<U>(tr * freq);
        if (opt_.scale != 1.0) arg = static_cast<U>(scale * arg);
        const U s = std::sin(arg), c = std::cos(arg);
        row[i] = static_cast<T>(opt_.flip_sin_to_cos ? c : s);
        row[half + i] = static_cast<T>(opt_.flip_sin_to_cos ? s : c);
      }
      if (dim % 2 == 1) row[dim - 1] = T{0};
    }
  }

  TimestepEmbeddingOptions opt_;
  std::vector<double> t_;
  Buffer y_;
};

}  // namespace ddpm::nn
