#pragma once
// nn.GroupNorm(num_groups, num_channels, eps, affine) on [N, C, *], optionally
// followed by a SiLU in the same pass (PostActivation::SiLU: y = silu(norm(x)),
// one read of x and one write of y in forward; backward recomputes the
// normalised values instead of keeping them).
// Parameters (affine): "<prefix>.weight" [C] (init 1), "<prefix>.bias" [C] (init 0).
#include <string>
#include <utility>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/init.hpp"
#include "ddpm/nn/layer_base.hpp"
#include "ddpm/core/parameters.hpp"

namespace ddpm::nn {

enum class PostActivation { None, SiLU };

template <Scalar T, backend::Backend B>
class GroupNorm : public LayerBase {
 public:
  using M = typename B::memory_space;
  using Buffer = Tensor<T, M>;

  GroupNorm(Parameters<T, M>& params, const std::string& prefix, int num_groups, index_t num_channels,
            double eps = 1e-5, bool affine = true, PostActivation act = PostActivation::None)
      : LayerBase(prefix),
        params_(&params),
        groups_(num_groups),
        c_(num_channels),
        eps_(static_cast<T>(eps)),
        silu_(act == PostActivation::SiLU) {
    check(num_groups > 0 && num_channels > 0 && num_channels % num_groups == 0, "num_channels (", num_channels,
          ") must be a positive multiple of num_groups (", num_groups, ")");
    check(eps >= 0, "eps must be >= 0, got ", eps);
    if (affine) {
      weight_ = params.add(join_name(prefix, "weight"), {num_channels});
      bias_ = params.add(join_name(prefix, "bias"), {num_channels});
      init_constant<B>(params.value(weight_), T{1});  // usable before init()
    }
  }

  // x: [N, C, *] -> same shape. `out` (optional, x's shape): where to write y
  // instead of the layer's own buffer (output() is then that view).
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x, TensorView<T, M> out = {}) {
    check(x.rank() >= 2 && x.dim(1) == c_, "expected input [N, ", c_, ", ...], got ", x.shape().str());
    y_view_ = output_buffer(y_, x.shape(), out);
    ensure_shape(mean_, {x.dim(0) * groups_});
    ensure_shape(rstd_, {x.dim(0) * groups_});
    if (silu_)
      B::run(ops::group_norm_silu_forward, x, groups_, eps_, gamma(), beta(), y_view_, mean_.view(), rstd_.view());
    else
      B::run(ops::group_norm_forward, x, groups_, eps_, gamma(), beta(), y_view_, mean_.view(), rstd_.view());
    x_ = mode_ == Mode::Training ? x : ConstTensorView<T, M>{};
    return y_view_;
  }

  // `out` (optional): where to write dx instead of the layer's own buffer.
  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy, TensorView<T, M> out = {}) {
    check_backward(x_.data() != nullptr);
    check_shape("output gradient", dy.shape(), x_.shape());
    const TensorView<T, M> dx = output_buffer(dx_, x_.shape(), out);
    const TensorView<T, M> dgamma = affine() ? params_->grad(weight_) : TensorView<T, M>{};
    const TensorView<T, M> dbeta = affine() ? params_->grad(bias_) : TensorView<T, M>{};
    if (silu_)
      B::run(ops::group_norm_silu_backward, x_, groups_, gamma(), beta(), mean_.cview(), rstd_.cview(), dy, dx, dgamma,
             dbeta);
    else
      B::run(ops::group_norm_backward, x_, groups_, gamma(), mean_.cview(), rstd_.cview(), dy, dx, dgamma, dbeta);
    return dx;
  }

  void init(Rng&) {
    if (!affine()) return;
    init_constant<B>(params_->value(weight_), T{1});
    init_constant<B>(params_->value(bias_), T{0});
  }

  // The last forward's output, after the SiLU if fused (valid until the next forward).
  ConstTensorView<T, M> output() const { return y_view_; }
  int num_groups() const { return groups_; }
  index_t num_channels() const { return c_; }
  T eps() const { return eps_; }
  bool affine() const { return weight_ >= 0; }
  PostActivation post_activation() const { return silu_ ? PostActivation::SiLU : PostActivation::None; }
  ParamId weight_id() const { return weight_; }
  ParamId bias_id() const { return bias_; }
  // The statistics of the last forward, [N * G] (n-major).
  ConstTensorView<T, M> saved_mean() const { return mean_.view(); }
  ConstTensorView<T, M> saved_rstd() const { return rstd_.view(); }

 private:
  ConstTensorView<T, M> gamma() const { return affine() ? std::as_const(*params_).value(weight_) : ConstTensorView<T, M>{}; }
  ConstTensorView<T, M> beta() const { return affine() ? std::as_const(*params_).value(bias_) : ConstTensorView<T, M>{}; }

  Parameters<T, M>* params_;
  int groups_;
  index_t c_;
  T eps_;
  bool silu_;
  ParamId weight_ = -1, bias_ = -1;
  ConstTensorView<T, M> x_;
  TensorView<T, M> y_view_;
  Buffer y_, dx_, mean_, rstd_;
};

}  // namespace ddpm::nn
