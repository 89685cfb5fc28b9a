#pragma once
// MLPDenoiser<T, B>: a small denoiser for vector data (the arcsin example):
//
//   h = [x, sinusoidal(t), cond]          cond concatenated (cond_mode Concat)
//   h = SiLU(layers.0(h) [+ cond_proj(cond)])   (cond_mode Add: projected and added)
//   h = SiLU(layers.i(h))                  i = 1 .. depth - 1
//   y = out(h)                             [N, data_dim]
//
// x [N, data_dim], t one per row (fractional allowed), cond [N, cond_dim] when
// cond_dim > 0. Parameter names: layers.<i>.{weight,bias}, cond_proj.{weight,
// bias} (Add only), out.{weight,bias}. Save/load: io/mlp_denoiser.hpp.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/core/model.hpp"
#include "ddpm/nn/composite.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/numerics.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/nn/timestep_embedding.hpp"

namespace ddpm::nn {

enum class CondMode { Concat, Add };

struct MLPDenoiserConfig {
  int data_dim = 1;
  int cond_dim = 0;  // 0: unconditional
  CondMode cond_mode = CondMode::Concat;
  int hidden = 128;
  int depth = 3;  // hidden layers (each Linear + SiLU)
  int time_embed_dim = 32;
  bool flip_sin_to_cos = true;
  double freq_shift = 0.0;

  void validate() const {
    require(data_dim > 0, "MLPDenoiserConfig: data_dim = ", data_dim, " must be > 0");
    require(cond_dim >= 0, "MLPDenoiserConfig: cond_dim = ", cond_dim, " must be >= 0");
    require(hidden > 0, "MLPDenoiserConfig: hidden = ", hidden, " must be > 0");
    require(depth > 0, "MLPDenoiserConfig: depth = ", depth, " must be > 0");
    require(time_embed_dim >= 2, "MLPDenoiserConfig: time_embed_dim = ", time_embed_dim, " must be >= 2");
    require(static_cast<double>(time_embed_dim / 2) != freq_shift, "MLPDenoiserConfig: freq_shift = ", freq_shift,
            " must differ from time_embed_dim / 2");
  }
  index_t input_width() const {
    return data_dim + time_embed_dim + (cond_mode == CondMode::Concat ? cond_dim : 0);
  }
};

template <Scalar T, backend::Backend B>
class MLPDenoiser {
 public:
  using scalar_type = T;
  using backend_type = B;
  using M = typename B::memory_space;
  using memory_space = M;
  using Buffer = Tensor<T, M>;

  explicit MLPDenoiser(MLPDenoiserConfig config, Numerics numerics = Numerics::Exact)
      : config_(std::move(config)), params_(std::make_unique<Parameters<T, M>>()) {
    config_.validate();
    net_ = std::make_unique<Net>(*params_, config_, numerics);
  }
  MLPDenoiser(MLPDenoiser&&) noexcept = default;
  MLPDenoiser& operator=(MLPDenoiser&&) noexcept = default;

  const MLPDenoiserConfig& config() const { return config_; }
  Parameters<T, M>& parameters() { return *params_; }
  const Parameters<T, M>& parameters() const { return *params_; }
  index_t num_parameters() const { return params_->numel(); }
  void set_mode(Mode m) { set_mode_recursive(*this, m); }
  // PyTorch's default initialisation of every layer, drawn in for_each_child's order.
  void init(Rng& rng) { init_children(*this, rng); }

  // The layers (nn/composite.hpp): time_proj, layers.<i>, their activations,
  // cond_proj (Add mode), out. The order is init's: it fixes a seed's weights.
  template <class F>
  void for_each_child(F&& f) {
    Net& n = *net_;
    visit_children(f, n.time_proj, n.layers, n.acts, n.cond_proj, n.out);
  }

  // x [N, data_dim]; t: N values or one for all; cond [N, cond_dim] or empty.
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, std::span<const double> t, ConstTensorView<T, M> cond = {}) {
    return net_->forward(x, t, cond, config_);
  }
  // The Denoiser interface (core/model.hpp).
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, std::span<const T> t, const Conditioning<T, M>& c) {
    require(c.class_labels.empty(), "MLPDenoiser: class labels are not supported (use a conditioning vector)");
    require(c.image.data() == nullptr, "MLPDenoiser: a condition image is not supported (use a conditioning vector)");
    t_.assign(t.begin(), t.end());
    return forward(x, std::span<const double>(t_), c.vector);
  }
  // dL/dy -> dL/dx; parameter gradients ACCUMULATE. dL/dcond: cond_grad().
  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy) { return net_->backward(dy, config_); }
  ConstTensorView<T, M> cond_grad() const { return net_->dcond.view(); }

 private:
  struct Net {
    std::unique_ptr<SinusoidalTimestepEmbedding<T, B>> time_proj;
    std::vector<std::unique_ptr<Linear<T, B>>> layers;
    std::vector<std::unique_ptr<SiLU<T, B>>> acts;
    std::unique_ptr<Linear<T, B>> cond_proj, out;
    Buffer input, sum, dx, dcond;
    std::vector<double> t_batch;
    bool with_cond = false;

    Net(Parameters<T, M>& p, const MLPDenoiserConfig& c, Numerics numerics) {
      TimestepEmbeddingOptions te;
      te.dim = c.time_embed_dim;
      te.flip_sin_to_cos = c.flip_sin_to_cos;
      te.freq_shift = c.freq_shift;
      te.numerics = numerics;
      time_proj = std::make_unique<SinusoidalTimestepEmbedding<T, B>>(te, "time_proj");
      for (int i = 0; i < c.depth; ++i) {
        const index_t in = i == 0 ? c.input_width() : c.hidden;
        layers.push_back(std::make_unique<Linear<T, B>>(p, "layers." + std::to_string(i), in, c.hidden));
        acts.push_back(std::make_unique<SiLU<T, B>>("act." + std::to_string(i)));
      }
      if (c.cond_dim > 0 && c.cond_mode == CondMode::Add)
        cond_proj = std::make_unique<Linear<T, B>>(p, "cond_proj", c.cond_dim, c.hidden);
      out = std::make_unique<Linear<T, B>>(p, "out", c.hidden, c.data_dim);
    }
    ConstTensorView<T, M> forward(ConstTensorView<T, M> x, std::span<const double> t, ConstTensorView<T, M> cond,
                               const MLPDenoiserConfig& c) {
      require(x.rank() == 2 && x.dim(1) == c.data_dim, "MLPDenoiser: expected x [N, ", c.data_dim, "], got ",
              x.shape().str());
      const index_t N = x.dim(0), D = c.data_dim, E = c.time_embed_dim, C = c.cond_dim;
      require(t.size() == static_cast<std::size_t>(N) || t.size() == 1, "MLPDenoiser: ", t.size(),
              " timesteps for a batch of ", N);
      with_cond = C > 0;
      if (with_cond)
        require(cond.data() != nullptr && cond.rank() == 2 && cond.dim(0) == N && cond.dim(1) == C,
                "MLPDenoiser: expected a conditioning vector [", N, ", ", C, "], got ",
                cond.data() ? cond.shape().str() : std::string("none"));
      else
        require(cond.data() == nullptr, "MLPDenoiser: a conditioning vector was given but cond_dim is 0");
      t_batch.assign(static_cast<std::size_t>(N), t[0]);
      if (t.size() == static_cast<std::size_t>(N)) std::copy(t.begin(), t.end(), t_batch.begin());
      const ConstTensorView<T, M> temb = time_proj->forward(std::span<const double>(t_batch));
      const bool concat = with_cond && c.cond_mode == CondMode::Concat;
      const index_t W = c.input_width();
      ensure_shape(input, {N, W});
      // input = [x, temb, cond] along the features.
      B::run(ops::copy_columns, x, 0, input.view(), 0, D);
      B::run(ops::copy_columns, temb, 0, input.view(), D, E);
      if (concat) B::run(ops::copy_columns, cond, 0, input.view(), D + E, C);
      ConstTensorView<T, M> h = layers[0]->forward(input.view());
      if (cond_proj) {
        const ConstTensorView<T, M> pc = cond_proj->forward(cond);
        ensure_shape(sum, h.shape());
        B::run(ops::add, h, pc, T{1}, sum.view());
        h = sum.view();
      }
      h = acts[0]->forward(h);
      for (std::size_t i = 1; i < layers.size(); ++i) h = acts[i]->forward(layers[i]->forward(h));
      return out->forward(h);
    }

    ConstTensorView<T, M> backward(ConstTensorView<T, M> dy, const MLPDenoiserConfig& c) {
      ConstTensorView<T, M> g = out->backward(dy);
      for (std::size_t i = layers.size(); i-- > 1;) g = layers[i]->backward(acts[i]->backward(g));
      g = acts[0]->backward(g);
      const index_t D = c.data_dim, E = c.time_embed_dim, C = c.cond_dim, N = g.dim(0);
      if (with_cond) ensure_shape(dcond, {N, C});
      if (cond_proj) {
        const ConstTensorView<T, M> dc = cond_proj->backward(g);
        B::run(ops::copy, dc, dcond.view());
      }
      const ConstTensorView<T, M> din = layers[0]->backward(g);
      ensure_shape(dx, {N, D});
      // The inverse split: dx = din[:, :D], dcond = din[:, D + E:] (Concat).
      B::run(ops::copy_columns, din, 0, dx.view(), 0, D);
      if (with_cond && !cond_proj) B::run(ops::copy_columns, din, D + E, dcond.view(), 0, C);
      return dx.view();
    }
  };

  MLPDenoiserConfig config_;
  std::unique_ptr<Parameters<T, M>> params_;
  std::unique_ptr<Net> net_;
  std::vector<double> t_;
};

}  // namespace ddpm::nn
