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
#include <concepts>
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
  using M = typename B::memory_space;
  using Buffer = Tensor<T, M>;

  explicit SinusoidalTimestepEmbedding(TimestepEmbeddingOptions opt, const std::string& prefix = "time_proj")
      : LayerBase(prefix), opt_(opt) {
    check(opt.dim > 0, "dim must be > 0, got ", opt.dim);
    check(opt.dim < 2 || static_cast<double>(opt.dim / 2) != opt.freq_shift, "freq_shift (", opt.freq_shift,
          ") must differ from dim / 2 (", opt.dim / 2, ")");
  }

  // t[N] (host values) -> [N, dim].
  ConstTensorView<T, M> forward(std::span<const double> t) {
    ensure_shape(y_, {static_cast<index_t>(t.size()), opt_.dim});
    backend::TimestepEmbeddingParams p;
    p.flip_sin_to_cos = opt_.flip_sin_to_cos;
    p.freq_shift = opt_.freq_shift;
    p.max_period = opt_.max_period;
    p.scale = opt_.scale;
    p.float32 = opt_.numerics == Numerics::Diffusers;
    B::run(ops::timestep_embedding, t, p, y_.view());
    return y_.view();
  }
  // The same with t as a host tensor of any shape (its elements in order).
  ConstTensorView<T, M> forward(ConstTensorView<T> t) requires std::same_as<M, Host> {
    t_.assign(t.begin(), t.end());
    return forward(std::span<const double>(t_));
  }
  ConstTensorView<T, M> forward(TensorView<T> t) requires std::same_as<M, Host> {
    return forward(ConstTensorView<T>(t));
  }

  void init(Rng&) {}
  const TimestepEmbeddingOptions& options() const { return opt_; }
  index_t dim() const { return opt_.dim; }

 private:
  TimestepEmbeddingOptions opt_;
  std::vector<double> t_;
  Buffer y_;
};

}  // namespace ddpm::nn
