#pragma once
// backend::Eigen: the fast CPU backend. Same contract and results (within
// rounding) as backend::Reference (backend/backend.hpp), built on Eigen's
// GEMM and vectorised array expressions:
//
//   gemm, linear      Eigen GEMM on row-major maps, split over threads by rows
//                     or columns of the result
//   conv2d            GEMM formulation (eigen/conv.hpp): with AVX2+FMA a
//                     register-blocked kernel (eigen/kernel.hpp) fed without
//                     im2col for stride 1; otherwise im2col tiles + Eigen GEMM.
//                     backward = weight GEMM accumulated per thread + col2im
//   group_norm        two-pass mean/variance per (n, group) on Eigen arrays;
//                     fused with the SiLU that follows it where nn/ asks
//   silu, upsample,   vectorised element loops
//   add, transpose
//   attention         per (batch, head) GEMMs on strided head slices
//
// Threads: a fork-join pool (core/thread_pool.hpp) of num_threads()
// participants, set at run time with set_num_threads (default: the hardware
// concurrency). Work is split statically, and per-thread partial parameter
// gradients are summed in thread order, so results are deterministic for a
// given thread count (and equal within rounding across counts).
//
// Scratch (im2col tiles, partial gradients, attention rows) lives in
// per-thread buffers that only grow: steady-state calls do not allocate
// (apart from Eigen's own GEMM packing buffers above its stack limit, used by
// gemm/linear/attention and the non-AVX2 convolution path).
#include <string_view>

#include "ddpm/backend/backend.hpp"
#include "ddpm/backend/eigen/attention.hpp"
#include "ddpm/backend/eigen/common.hpp"
#include "ddpm/backend/eigen/conv.hpp"
#include "ddpm/backend/eigen/pointwise.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::backend {

struct Eigen {
  using memory_space = Host;

  static constexpr std::string_view name() { return "eigen"; }
  static void set_num_threads(int n) { eigen_detail::set_num_threads(n); }
  static int num_threads() { return eigen_detail::num_threads(); }

  template <Scalar T>
  static void gemm(Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* A, index_t lda,
                   const T* B, index_t ldb, T beta, T* C, index_t ldc) {
    eigen_detail::gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
  }

  template <Scalar T>
  static void linear_forward(ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> b, TensorView<T> y) {
    eigen_detail::linear_forward(x, w, b, y);
  }
  template <Scalar T>
  static void linear_backward(ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> dy, TensorView<T> dx,
                              TensorView<T> dw, TensorView<T> db) {
    eigen_detail::linear_backward(x, w, dy, dx, dw, db);
  }

  template <Scalar T>
  static void conv2d_forward(ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> b, Conv2dParams p,
                             TensorView<T> y) {
    eigen_detail::conv2d_forward(x, w, b, p, y);
  }
  template <Scalar T>
  static void conv2d_backward(ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> dy, Conv2dParams p,
                              TensorView<T> dx, TensorView<T> dw, TensorView<T> db) {
    eigen_detail::conv2d_backward(x, w, dy, p, dx, dw, db);
  }

  template <Scalar T>
  static void group_norm_forward(ConstTensorView<T> x, int groups, T eps, ConstTensorView<T> gamma,
                                 ConstTensorView<T> beta, TensorView<T> y, TensorView<T> mean, TensorView<T> rstd) {
    eigen_detail::group_norm_forward(x, groups, eps, gamma, beta, y, mean, rstd);
  }
  template <Scalar T>
  static void group_norm_backward(ConstTensorView<T> x, int groups, ConstTensorView<T> gamma, ConstTensorView<T> mean,
                                  ConstTensorView<T> rstd, ConstTensorView<T> dy, TensorView<T> dx,
                                  TensorView<T> dgamma, TensorView<T> dbeta) {
    eigen_detail::group_norm_backward(x, groups, gamma, mean, rstd, dy, dx, dgamma, dbeta);
  }

  template <Scalar T>
  static void group_norm_silu_forward(ConstTensorView<T> x, int groups, T eps, ConstTensorView<T> gamma,
                                      ConstTensorView<T> beta, TensorView<T> y, TensorView<T> mean,
                                      TensorView<T> rstd) {
    eigen_detail::group_norm_silu_forward(x, groups, eps, gamma, beta, y, mean, rstd);
  }
  template <Scalar T>
  static void group_norm_silu_backward(ConstTensorView<T> x, int groups, ConstTensorView<T> gamma,
                                       ConstTensorView<T> beta, ConstTensorView<T> mean, ConstTensorView<T> rstd,
                                       ConstTensorView<T> dy, TensorView<T> dx, TensorView<T> dgamma,
                                       TensorView<T> dbeta) {
    eigen_detail::group_norm_silu_backward(x, groups, gamma, beta, mean, rstd, dy, dx, dgamma, dbeta);
  }

  template <Scalar T>
  static void silu_forward(ConstTensorView<T> x, TensorView<T> y) {
    eigen_detail::silu_forward(x, y);
  }
  template <Scalar T>
  static void silu_backward(ConstTensorView<T> x, ConstTensorView<T> dy, TensorView<T> dx) {
    eigen_detail::silu_backward(x, dy, dx);
  }

  template <Scalar T>
  static void upsample_nearest2x_forward(ConstTensorView<T> x, TensorView<T> y) {
    eigen_detail::upsample_nearest2x_forward(x, y);
  }
  template <Scalar T>
  static void upsample_nearest2x_backward(ConstTensorView<T> dy, TensorView<T> dx) {
    eigen_detail::upsample_nearest2x_backward(dy, dx);
  }

  template <Scalar T>
  static void add(ConstTensorView<T> a, ConstTensorView<T> b, T alpha, TensorView<T> y) {
    eigen_detail::add(a, b, alpha, y);
  }
  template <Scalar T>
  static void add_channel_bias(ConstTensorView<T> x, ConstTensorView<T> e, TensorView<T> y) {
    eigen_detail::add_channel_bias(x, e, y);
  }
  template <Scalar T>
  static void channel_sum(ConstTensorView<T> x, TensorView<T> y) {
    eigen_detail::channel_sum(x, y);
  }
  template <Scalar T>
  static void transpose(ConstTensorView<T> x, index_t n, index_t a, index_t b, TensorView<T> y) {
    eigen_detail::transpose(x, n, a, b, y);
  }
  template <Scalar T>
  static void concat_channels(ConstTensorView<T> a, ConstTensorView<T> b, TensorView<T> y) {
    eigen_detail::concat_channels(a, b, y);
  }
  template <Scalar T>
  static void split_channels(ConstTensorView<T> y, TensorView<T> a, TensorView<T> b) {
    eigen_detail::split_channels(y, a, b);
  }

  template <Scalar T>
  static void attention_forward(ConstTensorView<T> q, ConstTensorView<T> k, ConstTensorView<T> v, int heads,
                                T scale, TensorView<T> out, TensorView<T> probs) {
    eigen_detail::attention_forward(q, k, v, heads, scale, out, probs);
  }
  template <Scalar T>
  static void attention_backward(ConstTensorView<T> q, ConstTensorView<T> k, ConstTensorView<T> v,
                                 ConstTensorView<T> probs, int heads, T scale, ConstTensorView<T> dout,
                                 TensorView<T> dq, TensorView<T> dk, TensorView<T> dv) {
    eigen_detail::attention_backward(q, k, v, probs, heads, scale, dout, dq, dk, dv);
  }
};

static_assert(Backend<Eigen>);

}  // namespace ddpm::backend
