#pragma once
// The backend op table: every operation a compute backend provides, declared
// once. An op is a tag type in ddpm::ops with
//
//   name                     what profiles and errors call it
//   signature<T, M>          its parameters, for scalar T in memory space M
//   flops(args...)           2 x the multiply-adds of its contractions (GEMM,
//                            convolution, attention); 0 for memory-bound ops
//                            (element-wise, normalisation, copies), whose cost
//                            is bytes, not arithmetic
//
// and a constexpr instance of the same name without `_t`. Layers call
// `B::run(ops::conv2d_forward, x, w, b, p, y)`. The Backend concept
// (backend/backend.hpp), Profiled<B>, FlopCounter and every forwarding
// backend are generated from `ops::all`, so adding an op means: its tag here,
// one entry in `all`, and its implementation in each backend.
//
// Conventions every op follows:
//   - Tensors are contiguous, row-major; images NCHW.
//   - Outputs are overwritten (=), except parameter gradients (dw, db, dgamma,
//     dbeta), which are ACCUMULATED (+=), so that a layer used twice and a
//     model's flat gradient buffer need no extra copies.
//   - An empty view (data() == nullptr) means "absent": no bias, or an input
//     gradient nobody needs (skipping it saves work).
//   - Shapes are validated by the caller (nn/), not by the backend.
#include <cstddef>
#include <string_view>
#include <tuple>
#include <type_traits>

#include "ddpm/core/tensor.hpp"

namespace ddpm {

namespace backend {

enum class Trans { No, Yes };

// Zero padding per side (diffusers' downsample_padding = 0 pads only the
// bottom and right) and a common stride.
struct Conv2dParams {
  index_t stride = 1;
  index_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;

  static constexpr Conv2dParams symmetric(index_t stride, index_t pad) { return {stride, pad, pad, pad, pad}; }
  constexpr index_t out_h(index_t h, index_t kh) const { return (h + pad_top + pad_bottom - kh) / stride + 1; }
  constexpr index_t out_w(index_t w, index_t kw) const { return (w + pad_left + pad_right - kw) / stride + 1; }
};

}  // namespace backend

namespace ops {

using backend::Conv2dParams;
using backend::Trans;

template <class T, class M>
using In = ConstTensorView<T, M>;
template <class T, class M>
using Out = TensorView<T, M>;

namespace detail {
inline double d(index_t v) { return static_cast<double>(v); }
// Multiply-adds of a convolution's forward: N x Co x OH x OW x Ci x KH x KW.
template <class X, class W>
double conv_flops(const X& x, const W& w, Conv2dParams p) {
  return 2.0 * d(x.dim(0)) * d(w.numel()) * d(p.out_h(x.dim(2), w.dim(2))) * d(p.out_w(x.dim(3), w.dim(3)));
}
template <class V>
bool present(const V& v) { return v.data() != nullptr; }
}  // namespace detail

// Ops whose cost is bytes moved, not arithmetic (element-wise maps,
// normalisation, copies): they count no flops.
struct memory_bound {
  template <class... A>
  static double flops(const A&...) { return 0; }
};

// C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, row-major, leading
// dimensions given. As in BLAS, beta == 0 overwrites C without reading it.
struct gemm_t {
  static constexpr std::string_view name = "gemm";
  template <class T, class M>
  using signature = void(Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* A, index_t lda,
                         const T* B, index_t ldb, T beta, T* C, index_t ldc);
  template <class T>
  static double flops(Trans, Trans, index_t m, index_t n, index_t k, T, const T*, index_t, const T*, index_t, T, T*,
                      index_t) {
    return 2.0 * detail::d(m) * detail::d(n) * detail::d(k);
  }
};

// y[R, out] = x[R, in] w[out, in]^T + b[out] (PyTorch's weight layout; any
// leading dims of x are rows).
struct linear_forward_t {
  static constexpr std::string_view name = "linear_forward";
  template <class T, class M>
  using signature = void(In<T, M> x, In<T, M> w, In<T, M> b, Out<T, M> y);
  template <class X, class W, class B, class Y>
  static double flops(const X& x, const W& w, const B&, const Y&) {
    return w.numel() ? 2.0 * detail::d(x.numel() / w.dim(1)) * detail::d(w.numel()) : 0.0;
  }
};
// dx = dy w;  dw += dy^T x;  db += column sums of dy.
struct linear_backward_t {
  static constexpr std::string_view name = "linear_backward";
  template <class T, class M>
  using signature = void(In<T, M> x, In<T, M> w, In<T, M> dy, Out<T, M> dx, Out<T, M> dw, Out<T, M> db);
  template <class X, class W, class DY, class DX, class DW, class DB>
  static double flops(const X& x, const W& w, const DY&, const DX& dx, const DW& dw, const DB&) {
    const double f = w.numel() ? 2.0 * detail::d(x.numel() / w.dim(1)) * detail::d(w.numel()) : 0.0;
    return f * (detail::present(dx) + detail::present(dw));
  }
};

// x [N, Ci, H, W], w [Co, Ci, KH, KW], b [Co] -> y [N, Co, OH, OW].
struct conv2d_forward_t {
  static constexpr std::string_view name = "conv2d_forward";
  template <class T, class M>
  using signature = void(In<T, M> x, In<T, M> w, In<T, M> b, Conv2dParams p, Out<T, M> y);
  template <class X, class W, class B, class Y>
  static double flops(const X& x, const W& w, const B&, Conv2dParams p, const Y&) {
    return detail::conv_flops(x, w, p);
  }
};
// dx = (input gradient), dw += (weight gradient), db += per-channel sums of dy.
struct conv2d_backward_t {
  static constexpr std::string_view name = "conv2d_backward";
  template <class T, class M>
  using signature = void(In<T, M> x, In<T, M> w, In<T, M> dy, Conv2dParams p, Out<T, M> dx, Out<T, M> dw,
                         Out<T, M> db);
  template <class X, class W, class DY, class DX, class DW, class DB>
  static double flops(const X& x, const W& w, const DY&, Conv2dParams p, const DX& dx, const DW& dw, const DB&) {
    return detail::conv_flops(x, w, p) * (detail::present(dx) + detail::present(dw));
  }
};

// GroupNorm over (C/G, H, W) per (n, g), affine per channel; saves mean and
// rstd [N * G] for backward.
struct group_norm_forward_t : memory_bound {
  static constexpr std::string_view name = "group_norm_forward";
  template <class T, class M>
  using signature = void(In<T, M> x, int groups, T eps, In<T, M> gamma, In<T, M> beta, Out<T, M> y,
                         Out<T, M> mean, Out<T, M> rstd);
};
struct group_norm_backward_t : memory_bound {
  static constexpr std::string_view name = "group_norm_backward";
  template <class T, class M>
  using signature = void(In<T, M> x, int groups, In<T, M> gamma, In<T, M> mean, In<T, M> rstd, In<T, M> dy,
                         Out<T, M> dx, Out<T, M> dgamma, Out<T, M> dbeta);
};
// SiLU(GroupNorm(x)) fused (the pre-activation before every U-Net conv):
// forward as group_norm_forward with y = silu(group_norm(x)); backward
// recomputes the normalised values from x and the saved mean and rstd.
struct group_norm_silu_forward_t : memory_bound {
  static constexpr std::string_view name = "group_norm_silu_forward";
  template <class T, class M>
  using signature = void(In<T, M> x, int groups, T eps, In<T, M> gamma, In<T, M> beta, Out<T, M> y,
                         Out<T, M> mean, Out<T, M> rstd);
};
struct group_norm_silu_backward_t : memory_bound {
  static constexpr std::string_view name = "group_norm_silu_backward";
  template <class T, class M>
  using signature = void(In<T, M> x, int groups, In<T, M> gamma, In<T, M> beta, In<T, M> mean, In<T, M> rstd,
                         In<T, M> dy, Out<T, M> dx, Out<T, M> dgamma, Out<T, M> dbeta);
};

// y = x * sigmoid(x); backward: dx = dy * silu'(x).
struct silu_forward_t : memory_bound {
  static constexpr std::string_view name = "silu_forward";
  template <class T, class M>
  using signature = void(In<T, M> x, Out<T, M> y);
};
struct silu_backward_t : memory_bound {
  static constexpr std::string_view name = "silu_backward";
  template <class T, class M>
  using signature = void(In<T, M> x, In<T, M> dy, Out<T, M> dx);
};

// Nearest-neighbour 2x upsampling of NCHW; backward sums each 2x2 block.
struct upsample_nearest2x_forward_t : memory_bound {
  static constexpr std::string_view name = "upsample_nearest2x_forward";
  template <class T, class M>
  using signature = void(In<T, M> x, Out<T, M> y);
};
struct upsample_nearest2x_backward_t : memory_bound {
  static constexpr std::string_view name = "upsample_nearest2x_backward";
  template <class T, class M>
  using signature = void(In<T, M> dy, Out<T, M> dx);
};

// The glue between layers (residual connections, the time-embedding
// broadcast, NCHW <-> token-major). Each output may alias an input of the
// same shape.
// y = alpha * (a + b); b may be empty (y = alpha * a).
struct add_t : memory_bound {
  static constexpr std::string_view name = "add";
  template <class T, class M>
  using signature = void(In<T, M> a, In<T, M> b, T alpha, Out<T, M> y);
};
// y[n, c, ...] = x[n, c, ...] + e[n, c] for x [N, C, ...], e [N, C].
struct add_channel_bias_t : memory_bound {
  static constexpr std::string_view name = "add_channel_bias";
  template <class T, class M>
  using signature = void(In<T, M> x, In<T, M> e, Out<T, M> y);
};
// y[n, c] = sum of x[n, c, ...] for x [N, C, ...].
struct channel_sum_t : memory_bound {
  static constexpr std::string_view name = "channel_sum";
  template <class T, class M>
  using signature = void(In<T, M> x, Out<T, M> y);
};
// x viewed as [n, a, b] -> y [n, b, a] (no aliasing).
struct transpose_t : memory_bound {
  static constexpr std::string_view name = "transpose";
  template <class T, class M>
  using signature = void(In<T, M> x, index_t n, index_t a, index_t b, Out<T, M> y);
};
// The U-Net's skip concatenation: y[m] = [a[m], b[m]] for a [N, Ca, ...],
// b [N, Cb, ...] (same N and trailing dims), y [N, Ca + Cb, ...]; and its
// inverse, a[m] = y[m, :Ca], b[m] = y[m, Ca:] (Ca = a.dim(1)). No aliasing.
struct concat_channels_t : memory_bound {
  static constexpr std::string_view name = "concat_channels";
  template <class T, class M>
  using signature = void(In<T, M> a, In<T, M> b, Out<T, M> y);
};
struct split_channels_t : memory_bound {
  static constexpr std::string_view name = "split_channels";
  template <class T, class M>
  using signature = void(In<T, M> y, Out<T, M> a, Out<T, M> b);
};

// Multi-head scaled dot-product self-attention on token-major data.
// q, k, v, out: [N, L, C] with C = heads * d (head h owns channels h*d..h*d+d-1);
// probs: [N, heads, L, L], the rows softmax(q k^T * scale), saved for backward.
struct attention_forward_t {
  static constexpr std::string_view name = "attention_forward";
  template <class T, class M>
  using signature = void(In<T, M> q, In<T, M> k, In<T, M> v, int heads, T scale, Out<T, M> out, Out<T, M> probs);
  // q k^T and probs v: 2 x N x L x L x C multiply-adds.
  template <class Q, class... A>
  static double flops(const Q& q, const A&...) {
    return 4.0 * detail::d(q.dim(0)) * detail::d(q.dim(1)) * detail::d(q.dim(1)) * detail::d(q.dim(2));
  }
};
struct attention_backward_t {
  static constexpr std::string_view name = "attention_backward";
  template <class T, class M>
  using signature = void(In<T, M> q, In<T, M> k, In<T, M> v, In<T, M> probs, int heads, T scale, In<T, M> dout,
                         Out<T, M> dq, Out<T, M> dk, Out<T, M> dv);
  // dprobs = dout v^T, dv = probs^T dout, dq = dS k, dk = dS^T q: 4 x N x L x L x C.
  template <class Q, class... A>
  static double flops(const Q& q, const A&...) {
    return 8.0 * detail::d(q.dim(0)) * detail::d(q.dim(1)) * detail::d(q.dim(1)) * detail::d(q.dim(2));
  }
};

inline constexpr gemm_t gemm{};
inline constexpr linear_forward_t linear_forward{};
inline constexpr linear_backward_t linear_backward{};
inline constexpr conv2d_forward_t conv2d_forward{};
inline constexpr conv2d_backward_t conv2d_backward{};
inline constexpr group_norm_forward_t group_norm_forward{};
inline constexpr group_norm_backward_t group_norm_backward{};
inline constexpr group_norm_silu_forward_t group_norm_silu_forward{};
inline constexpr group_norm_silu_backward_t group_norm_silu_backward{};
inline constexpr silu_forward_t silu_forward{};
inline constexpr silu_backward_t silu_backward{};
inline constexpr upsample_nearest2x_forward_t upsample_nearest2x_forward{};
inline constexpr upsample_nearest2x_backward_t upsample_nearest2x_backward{};
inline constexpr add_t add{};
inline constexpr add_channel_bias_t add_channel_bias{};
inline constexpr channel_sum_t channel_sum{};
inline constexpr transpose_t transpose{};
inline constexpr concat_channels_t concat_channels{};
inline constexpr split_channels_t split_channels{};
inline constexpr attention_forward_t attention_forward{};
inline constexpr attention_backward_t attention_backward{};

template <class... Ops>
struct list {
  static constexpr std::size_t size = sizeof...(Ops);
};

// Every op, in the order profiles list them.
using all = list<gemm_t, linear_forward_t, linear_backward_t, conv2d_forward_t, conv2d_backward_t,
                 group_norm_forward_t, group_norm_backward_t, group_norm_silu_forward_t, group_norm_silu_backward_t,
                 silu_forward_t, silu_backward_t, upsample_nearest2x_forward_t, upsample_nearest2x_backward_t, add_t,
                 add_channel_bias_t, channel_sum_t, transpose_t, concat_channels_t, split_channels_t,
                 attention_forward_t, attention_backward_t>;

// Position of Op in list L (a compile error if it is not there).
template <class Op, class L>
struct index_of;
template <class Op, class... Ops>
struct index_of<Op, list<Ops...>> {
  static constexpr std::size_t value = [] {
    constexpr bool hit[] = {std::is_same_v<Op, Ops>...};
    for (std::size_t i = 0; i < sizeof...(Ops); ++i)
      if (hit[i]) return i;
    return sizeof...(Ops);
  }();
  static_assert(value < sizeof...(Ops), "ops::index_of: not an op of the table");
};

// The names of list L's ops, in order.
template <class L>
struct names;
template <class... Ops>
struct names<list<Ops...>> {
  static constexpr std::string_view value[] = {Ops::name...};
};

}  // namespace ops
}  // namespace ddpm
