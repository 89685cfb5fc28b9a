#pragma once
// Channel concatenation of the U-Net's skip connections: [hidden, skip] on
// dim 1 (hidden first, as diffusers' up blocks do). Backward splits the
// gradient: backward() returns d hidden, skip_grad() d skip.
#include <algorithm>
#include <string>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/layer_base.hpp"

namespace ddpm::nn {

template <Scalar T, backend::Backend B>
class ChannelConcat : public LayerBase {
 public:
  using M = typename B::memory_space;
  using Buffer = Tensor<T, M>;

  explicit ChannelConcat(const std::string& prefix = "concat") : LayerBase(prefix) {}

  // hidden [N, Ca, *], skip [N, Cb, *] (same N and trailing dims) -> [N, Ca + Cb, *].
  ConstTensorView<T, M> forward(ConstTensorView<T, M> hidden, ConstTensorView<T, M> skip) {
    bool same = hidden.rank() >= 2 && skip.rank() == hidden.rank() && skip.dim(0) == hidden.dim(0);
    for (int d = 2; same && d < hidden.rank(); ++d) same = hidden.dim(d) == skip.dim(d);
    check(same, "cannot concatenate ", hidden.shape().str(), " and ", skip.shape().str(),
          " on channels (other dims must agree)");
    Shape s = hidden.shape();
    s[1] = hidden.dim(1) + skip.dim(1);
    ensure_shape(y_, s);
    a_shape_ = hidden.shape();
    b_shape_ = skip.shape();
    B::run(ops::concat_channels, hidden, skip, y_.view());
    have_forward_ = mode_ == Mode::Training;
    return y_.view();
  }

  // Returns d hidden; d skip is skip_grad().
  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy) {
    check_backward(have_forward_);
    check_shape("output gradient", dy.shape(), y_.shape());
    ensure_shape(da_, a_shape_);
    ensure_shape(db_, b_shape_);
    B::run(ops::split_channels, dy, da_.view(), db_.view());
    return da_.view();
  }
  ConstTensorView<T, M> skip_grad() const { return db_.view(); }

  void init(Rng&) {}

 private:
  Shape a_shape_, b_shape_;
  bool have_forward_ = false;
  Buffer y_, da_, db_;
};

}  // namespace ddpm::nn
