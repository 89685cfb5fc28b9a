#pragma once
// Dropout (Srivastava et al. 2014; PyTorch's nn.Dropout, as diffusers'
// ResnetBlock2D uses it): in training, y = x * m with m = 1 / (1 - p) for a
// kept element and 0 for a dropped one (each dropped with probability p);
// backward dx = dy * m, with the same mask. In inference y = x.
//
// The masks come from per-sample random streams (DropoutStreams), not from a
// layer-owned generator, so that a sample's mask is a function of its stream
// only, whatever the batch around it: the trainer gives sample g of step s
// the stream train::SampleStreams::dropout_rng(g), so training is
// reproducible, resumable bit for bit, and a data-parallel run draws the same
// masks as one process at the combined batch. Every Dropout layer of a model
// shares one DropoutStreams; the layers draw in forward order, each taking
// the next numel / N draws of every sample's stream:
//
//   element k of a sample's draw is word k % 4 of the stream's next Philox
//   block (one block per 4 elements; the unused words of a layer's last
//   block are discarded); it is dropped iff word < floor(p * 2^32).
//
// A training forward without streams (DropoutStreams::armed false) is the
// identity and records that no mask was applied (applied() false): the model
// refuses the backward of such a forward (nn/unet2d.hpp), since its gradient
// would not be dropout's.
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/layer_base.hpp"

namespace ddpm::nn {

// One random stream per batch element, shared by a model's Dropout layers
// for one forward. armed: the streams are for the next training forward.
struct DropoutStreams {
  std::vector<Rng> rngs;
  bool armed = false;

  void arm(std::span<const Rng> per_sample) {
    rngs.assign(per_sample.begin(), per_sample.end());
    armed = true;
  }
  void disarm() { armed = false; }
};

template <Scalar T, backend::Backend B>
class Dropout : public LayerBase {
 public:
  using M = typename B::memory_space;

  // p in [0, 1); `streams` may be null when p == 0.
  Dropout(const std::string& prefix, double p, DropoutStreams* streams)
      : LayerBase(prefix), p_(p), streams_(streams) {
    check(p >= 0 && p < 1, "dropout probability must be in [0, 1), got ", p);
    check(p == 0 || streams != nullptr, "dropout > 0 needs the model's per-sample streams");
  }

  double p() const { return p_; }
  // Whether the last forward applied a mask.
  bool applied() const { return applied_; }

  // x [N, ...] -> y: x itself (inference, p == 0, no streams armed) or the
  // masked copy in the layer's own buffer (training).
  ConstTensorView<T, M> forward(ConstTensorView<T, M> x) {
    applied_ = mode_ == Mode::Training && p_ > 0 && streams_->armed;
    if (!applied_) return x;
    const index_t n = x.dim(0), per = x.numel() / n;
    check(static_cast<index_t>(streams_->rngs.size()) == n, streams_->rngs.size(),
          " per-sample dropout streams for a batch of ", n);
    draw_mask(x.shape(), n, per);
    ensure_shape(y_, x.shape());
    B::run(ops::mul, x, mask_.cview(), y_.view());
    return y_.view();
  }

  ConstTensorView<T, M> backward(ConstTensorView<T, M> dy) {
    if (!applied_) return dy;
    check_backward(true);
    check_shape("output gradient", dy.shape(), mask_.shape());
    ensure_shape(dx_, dy.shape());
    B::run(ops::mul, dy, mask_.cview(), dx_.view());
    return dx_.view();
  }

  // The mask of the last applied forward (0 or 1 / (1 - p) per element).
  ConstTensorView<T, M> mask() const { return mask_.cview(); }

  void init(Rng&) {}

 private:
  void draw_mask(const Shape& shape, index_t n, index_t per) {
    Tensor<T>& host = host_mask();
    ensure_shape(host, shape);
    const auto threshold = static_cast<std::uint32_t>(std::floor(p_ * 4294967296.0));
    const T keep = static_cast<T>(1.0 / (1.0 - p_));
    for (index_t i = 0; i < n; ++i) {
      Rng& rng = streams_->rngs[static_cast<std::size_t>(i)];
      T* m = host.data() + i * per;
      for (index_t k = 0; k < per; k += 4) {
        const auto block = rng.next_block();
        for (index_t j = 0; j < 4 && k + j < per; ++j) m[k + j] = block[static_cast<std::size_t>(j)] < threshold ? T{} : keep;
      }
    }
    if constexpr (!std::same_as<M, Host>) {
      ensure_shape(mask_, shape);
      B::run(ops::copy_from_host, host.cview(), mask_.view());
    }
  }
  Tensor<T>& host_mask() {
    if constexpr (std::same_as<M, Host>)
      return mask_;
    else
      return mask_host_;
  }

  double p_;
  DropoutStreams* streams_;
  bool applied_ = false;
  Tensor<T> mask_host_;  // device models only
  Tensor<T, M> mask_, y_, dx_;
};

}  // namespace ddpm::nn
