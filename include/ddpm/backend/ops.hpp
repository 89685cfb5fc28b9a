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
//   - Data that is host data by nature (timesteps, class labels, per-sample
//     coefficients and loss weights) is passed as a host std::span; results
//     the caller branches on (a loss, a norm, a finiteness check) come back
//     to the host as the op's return value.
//   - Most ops return void; an op whose signature returns a value is the
//     exception and says what it returns.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
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

// The sinusoidal timestep embedding's settings (diffusers'
// get_timestep_embedding); see ops::timestep_embedding.
struct TimestepEmbeddingParams {
  bool flip_sin_to_cos = true;
  double freq_shift = 0.0;   // downscale_freq_shift
  double max_period = 10000.0;
  double scale = 1.0;
  bool float32 = true;       // evaluate in float32 (as diffusers) whatever T is
};

// One Adam(W) step as torch.optim.Adam / AdamW take it (Kingma & Ba 2015,
// Algorithm 1, bias-corrected; AdamW: Loshchilov & Hutter 2019). `step` is
// the 1-based count of this update. coefficients<T>() rounds the step's
// constants to T once, as the update uses them.
struct AdamParams {
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool decoupled_weight_decay = false;
  std::int64_t step = 1;

  template <class T>
  struct Coefficients {
    T beta1, beta2, step_size, inv_sqrt_bc2, eps, weight_decay, decay;
    bool decoupled;
  };
  template <class T>
  Coefficients<T> coefficients() const {
    const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
    const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
    return {static_cast<T>(beta1),        static_cast<T>(beta2),       static_cast<T>(lr / bc1),
            static_cast<T>(1.0 / std::sqrt(bc2)), static_cast<T>(eps), static_cast<T>(weight_decay),
            static_cast<T>(1.0 - lr * weight_decay), decoupled_weight_decay};
  }
};

}  // namespace backend

namespace ops {

using backend::AdamParams;
using backend::Conv2dParams;
using backend::TimestepEmbeddingParams;
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

// diffusers' float64 attention (Numerics::Diffusers): as attention_forward,
// but the scores scale * q k^T (computed in T) are rounded to float32, the
// softmax runs in float32 (upcast_softmax casts to float32 whatever the model
// dtype) and the probabilities go back to T for probs v. For T = float it
// computes the same values as attention_forward.
struct attention_forward_float32_softmax_t {
  static constexpr std::string_view name = "attention_forward_float32_softmax";
  template <class T, class M>
  using signature = void(In<T, M> q, In<T, M> k, In<T, M> v, int heads, T scale, Out<T, M> out, Out<T, M> probs);
  template <class Q, class... A>
  static double flops(const Q& q, const A&... a) {
    return attention_forward_t::flops(q, a...);
  }
};

// ---- Element-wise maps and copies ----------------------------------------------
// y = a x + b, element-wise (the U-Net's input centring 2x - 1). y may alias x.
struct affine_t : memory_bound {
  static constexpr std::string_view name = "affine";
  template <class T, class M>
  using signature = void(In<T, M> x, T a, T b, Out<T, M> y);
};
// y = a * b, element-wise (dropout: the activations times a mask of 0 and
// 1 / (1 - p), and the same for the gradient). y may alias a or b.
struct mul_t : memory_bound {
  static constexpr std::string_view name = "mul";
  template <class T, class M>
  using signature = void(In<T, M> a, In<T, M> b, Out<T, M> y);
};
// y = value everywhere (zeroing gradients).
struct fill_t : memory_bound {
  static constexpr std::string_view name = "fill";
  template <class T, class M>
  using signature = void(T value, Out<T, M> y);
};
// y = x (same number of elements; no aliasing).
struct copy_t : memory_bound {
  static constexpr std::string_view name = "copy";
  template <class T, class M>
  using signature = void(In<T, M> x, Out<T, M> y);
};
// A block of columns between two row-major matrices with the same rows:
// x viewed as [R, Wx], y as [R, Wy] (R = x.dim(0) = y.dim(0), W = numel / R);
// y[r, y_col + j] = x[r, x_col + j] for j in [0, width). Feature-wise
// concatenation is one call per piece (x_col = 0), the split its inverse
// (y_col = 0). No aliasing.
struct copy_columns_t : memory_bound {
  static constexpr std::string_view name = "copy_columns";
  template <class T, class M>
  using signature = void(In<T, M> x, index_t x_col, Out<T, M> y, index_t y_col, index_t width);
};
// Between host memory and the backend's memory space M (both the same
// number of elements). For a host backend both are plain copies; they are
// how tests and io/ put data into a device backend and read it back.
struct copy_to_host_t : memory_bound {
  static constexpr std::string_view name = "copy_to_host";
  template <class T, class M>
  using signature = void(In<T, M> x, Out<T, Host> y);
};
struct copy_from_host_t : memory_bound {
  static constexpr std::string_view name = "copy_from_host";
  template <class T, class M>
  using signature = void(In<T, Host> x, Out<T, M> y);
};

// ---- Layers' own steps ------------------------------------------------------------
// ResnetBlock2D's scale_shift modulation (diffusers' time_embedding_norm
// "scale_shift"): for x [N, C, ...] and e [N, 2C] (scale = e[:, :C],
// shift = e[:, C:]),
//   y[n, c, ...] = x[n, c, ...] * (1 + scale[n, c]) + shift[n, c].
// y may alias x.
struct scale_shift_forward_t : memory_bound {
  static constexpr std::string_view name = "scale_shift_forward";
  template <class T, class M>
  using signature = void(In<T, M> x, In<T, M> e, Out<T, M> y);
};
// dx = dy * (1 + scale);  de[n, c] = sum dy * x,  de[n, C + c] = sum dy over
// the (n, c) plane, summed in T in element order. de is OVERWRITTEN (e is an
// activation, not a parameter). dx may alias dy.
struct scale_shift_backward_t : memory_bound {
  static constexpr std::string_view name = "scale_shift_backward";
  template <class T, class M>
  using signature = void(In<T, M> x, In<T, M> e, In<T, M> dy, Out<T, M> dx, Out<T, M> de);
};
// nn.Embedding: y[i, :] = table[labels[i], :] for table [K, D], y [N, D];
// labels are host data, checked to lie in [0, K) by the caller.
struct embedding_forward_t : memory_bound {
  static constexpr std::string_view name = "embedding_forward";
  template <class T, class M>
  using signature = void(In<T, M> table, std::span<const std::int64_t> labels, Out<T, M> y);
};
// dtable[labels[i], :] += dy[i, :], in order of i (a parameter gradient:
// accumulated).
struct embedding_backward_t : memory_bound {
  static constexpr std::string_view name = "embedding_backward";
  template <class T, class M>
  using signature = void(std::span<const std::int64_t> labels, In<T, M> dy, Out<T, M> dtable);
};
// The sinusoidal timestep embedding of DDPM (diffusers' get_timestep_embedding)
// for host timesteps t[N] into y [N, dim]: with half = dim / 2 and
// freq_i = exp(-ln(max_period) * i / (half - freq_shift)),
//   y[n] = [sin(scale t_n freq), cos(scale t_n freq)]   ([cos, sin] when flip_sin_to_cos),
// zero-padded by one column when dim is odd. Evaluated in float32 (each
// product, quotient and function rounded, as PyTorch does) when p.float32 or
// T is float, else in T.
struct timestep_embedding_t : memory_bound {
  static constexpr std::string_view name = "timestep_embedding";
  template <class T, class M>
  using signature = void(std::span<const double> t, TimestepEmbeddingParams p, Out<T, M> y);
};

// ---- Training -----------------------------------------------------------------------
// Per-sample linear combination, for x, z, y [N, ...] and host coefficients
// a[N], b[N]:  y[n, ...] = a[n] x[n, ...] + b[n] z[n, ...]
// (q_sample: x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps, Ho et al. 2020 eq. 4;
// the v target: v = sqrt(abar) eps - sqrt(1 - abar) x_0, Salimans & Ho 2022).
// y may alias x or z.
struct batch_axpby_t : memory_bound {
  static constexpr std::string_view name = "batch_axpby";
  template <class T, class M>
  using signature = void(std::span<const T> a, In<T, M> x, std::span<const T> b, In<T, M> z, Out<T, M> y);
};
// The denoising loss, a per-sample weighted mean squared error
//   L = 1/N sum_n w_n * mean_j (pred[n, j] - target[n, j])^2
// (DDPM's simple loss, eq. 14, when w is empty: all 1), RETURNED in double
// (each sample's squares summed in double in element order, then the samples
// in order); dpred = dL/dpred = 2 w_n / (N * per) * (pred - target), in T.
struct mse_loss_t : memory_bound {
  static constexpr std::string_view name = "mse_loss";
  template <class T, class M>
  using signature = double(In<T, M> pred, In<T, M> target, std::span<const double> weights, Out<T, M> dpred);
};
// RETURNS sum_i x_i^2, accumulated in double in element order (the global
// gradient norm; in double so that it does not depend on float rounding).
struct sum_squares_t : memory_bound {
  static constexpr std::string_view name = "sum_squares";
  template <class T, class M>
  using signature = double(In<T, M> x);
};
// RETURNS whether every element of x is finite (no NaN, no infinity).
struct all_finite_t : memory_bound {
  static constexpr std::string_view name = "all_finite";
  template <class T, class M>
  using signature = bool(In<T, M> x);
};
// One Adam(W) step on flat buffers, element-wise (c = s.coefficients<T>()):
//   Adam:  g += wd p;   AdamW: p *= 1 - lr wd
//   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2
//   p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
struct adam_update_t : memory_bound {
  static constexpr std::string_view name = "adam_update";
  template <class T, class M>
  using signature = void(Out<T, M> p, In<T, M> g, Out<T, M> m, Out<T, M> v, AdamParams s);
};
// Exponential moving average of the weights: shadow += (1 - decay) (p - shadow).
struct ema_update_t : memory_bound {
  static constexpr std::string_view name = "ema_update";
  template <class T, class M>
  using signature = void(In<T, M> p, T decay, Out<T, M> shadow);
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
inline constexpr attention_forward_float32_softmax_t attention_forward_float32_softmax{};
inline constexpr affine_t affine{};
inline constexpr mul_t mul{};
inline constexpr fill_t fill{};
inline constexpr copy_t copy{};
inline constexpr copy_columns_t copy_columns{};
inline constexpr copy_to_host_t copy_to_host{};
inline constexpr copy_from_host_t copy_from_host{};
inline constexpr scale_shift_forward_t scale_shift_forward{};
inline constexpr scale_shift_backward_t scale_shift_backward{};
inline constexpr embedding_forward_t embedding_forward{};
inline constexpr embedding_backward_t embedding_backward{};
inline constexpr timestep_embedding_t timestep_embedding{};
inline constexpr batch_axpby_t batch_axpby{};
inline constexpr mse_loss_t mse_loss{};
inline constexpr sum_squares_t sum_squares{};
inline constexpr all_finite_t all_finite{};
inline constexpr adam_update_t adam_update{};
inline constexpr ema_update_t ema_update{};

template <class... Ops>
struct list {
  static constexpr std::size_t size = sizeof...(Ops);
};

// Every op, in the order profiles list them.
using all = list<gemm_t, linear_forward_t, linear_backward_t, conv2d_forward_t, conv2d_backward_t,
                 group_norm_forward_t, group_norm_backward_t, group_norm_silu_forward_t, group_norm_silu_backward_t,
                 silu_forward_t, silu_backward_t, upsample_nearest2x_forward_t, upsample_nearest2x_backward_t, add_t,
                 add_channel_bias_t, channel_sum_t, transpose_t, concat_channels_t, split_channels_t,
                 attention_forward_t, attention_backward_t, attention_forward_float32_softmax_t, affine_t, mul_t, fill_t,
                 copy_t, copy_columns_t, copy_to_host_t, copy_from_host_t, scale_shift_forward_t,
                 scale_shift_backward_t, embedding_forward_t, embedding_backward_t, timestep_embedding_t,
                 batch_axpby_t, mse_loss_t, sum_squares_t, all_finite_t, adam_update_t, ema_update_t>;

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
