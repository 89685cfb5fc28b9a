#pragma once
// backend::Reference: the definition of every op of the table
// (backend/ops.hpp), written as plain loops that are easy to check by eye.
// Each op is an `invoke(ops::<name>_t, ...)` overload; callers use the
// generated `run(ops::<name>, ...)` (backend/backend.hpp).
// Sums are accumulated in T. Other backends are tested against this one; it
// is not meant to be fast.
//
// Shapes are taken from the views; like every backend it trusts the caller
// (nn/) to have validated them.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::backend {

struct Reference : Forwarding<Reference, Host> {
  static constexpr std::string_view name() { return "reference"; }
  static void set_num_threads(int) {}
  static int num_threads() { return 1; }

  // ---- GEMM -----------------------------------------------------------------
  // C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C (row-major; lda/ldb/ldc are
  // the row strides of A, B, C as stored). As in BLAS, beta == 0 overwrites C
  // without reading it (so C may hold garbage or NaN).
  template <Scalar T>
  static void invoke(ops::gemm_t, Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* A, index_t lda,
                     const T* B, index_t ldb, T beta, T* C, index_t ldc) {
    for (index_t i = 0; i < m; ++i) {
      for (index_t j = 0; j < n; ++j) {
        T acc{};
        for (index_t p = 0; p < k; ++p) {
          const T a = ta == Trans::No ? A[i * lda + p] : A[p * lda + i];
          const T b = tb == Trans::No ? B[p * ldb + j] : B[j * ldb + p];
          acc += a * b;
        }
        T& c = C[i * ldc + j];
        c = beta == T{} ? alpha * acc : alpha * acc + beta * c;
      }
    }
  }

  // ---- Linear ---------------------------------------------------------------
  // y[R,out] = x[R,in] w[out,in]^T + b[out], where R = x.numel() / in (any
  // leading dims of x are flattened into rows).
  template <Scalar T>
  static void invoke(ops::linear_forward_t, ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> b,
                     TensorView<T> y) {
    const index_t out = w.dim(0), in = w.dim(1), rows = in ? x.numel() / in : 0;
    for (index_t r = 0; r < rows; ++r)
      for (index_t o = 0; o < out; ++o) {
        T acc = b.data() ? b[o] : T{};
        for (index_t i = 0; i < in; ++i) acc += x[r * in + i] * w[o * in + i];
        y[r * out + o] = acc;
      }
  }

  // dx[R,in] = dy w;  dw[out,in] += dy^T x;  db[out] += sum_rows dy.
  template <Scalar T>
  static void invoke(ops::linear_backward_t, ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> dy,
                     TensorView<T> dx, TensorView<T> dw, TensorView<T> db) {
    const index_t out = w.dim(0), in = w.dim(1), rows = in ? x.numel() / in : 0;
    if (dx.data())
      for (index_t r = 0; r < rows; ++r)
        for (index_t i = 0; i < in; ++i) {
          T acc{};
          for (index_t o = 0; o < out; ++o) acc += dy[r * out + o] * w[o * in + i];
          dx[r * in + i] = acc;
        }
    if (dw.data())
      for (index_t o = 0; o < out; ++o)
        for (index_t i = 0; i < in; ++i) {
          T acc{};
          for (index_t r = 0; r < rows; ++r) acc += dy[r * out + o] * x[r * in + i];
          dw[o * in + i] += acc;
        }
    if (db.data())
      for (index_t o = 0; o < out; ++o) {
        T acc{};
        for (index_t r = 0; r < rows; ++r) acc += dy[r * out + o];
        db[o] += acc;
      }
  }

  // ---- Conv2d ---------------------------------------------------------------
  // y[n,co,oy,ox] = b[co] + sum_{ci,ky,kx} w[co,ci,ky,kx] * x[n,ci,iy,ix] with
  // iy = oy*stride - pad_top + ky, ix = ox*stride - pad_left + kx; taps outside
  // the image read zero. OH, OW = p.out_h(H, KH), p.out_w(W, KW).
  template <Scalar T>
  static void invoke(ops::conv2d_forward_t, ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> b,
                     Conv2dParams p, TensorView<T> y) {
    const index_t N = x.dim(0), Ci = x.dim(1), H = x.dim(2), W = x.dim(3);
    const index_t Co = w.dim(0), KH = w.dim(2), KW = w.dim(3);
    const index_t OH = p.out_h(H, KH), OW = p.out_w(W, KW);
    for (index_t n = 0; n < N; ++n)
      for (index_t co = 0; co < Co; ++co)
        for (index_t oy = 0; oy < OH; ++oy)
          for (index_t ox = 0; ox < OW; ++ox) {
            T acc = b.data() ? b[co] : T{};
            for (index_t ci = 0; ci < Ci; ++ci)
              for (index_t ky = 0; ky < KH; ++ky) {
                const index_t iy = oy * p.stride - p.pad_top + ky;
                if (iy < 0 || iy >= H) continue;
                for (index_t kx = 0; kx < KW; ++kx) {
                  const index_t ix = ox * p.stride - p.pad_left + kx;
                  if (ix < 0 || ix >= W) continue;
                  acc += w[((co * Ci + ci) * KH + ky) * KW + kx] * x[((n * Ci + ci) * H + iy) * W + ix];
                }
              }
            y[((n * Co + co) * OH + oy) * OW + ox] = acc;
          }
  }

  // The adjoint of conv2d_forward: dx = (scatter of dy through w), dw += dy (x) x, db += sum dy.
  template <Scalar T>
  static void invoke(ops::conv2d_backward_t, ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> dy,
                     Conv2dParams p, TensorView<T> dx, TensorView<T> dw, TensorView<T> db) {
    const index_t N = x.dim(0), Ci = x.dim(1), H = x.dim(2), W = x.dim(3);
    const index_t Co = w.dim(0), KH = w.dim(2), KW = w.dim(3);
    const index_t OH = p.out_h(H, KH), OW = p.out_w(W, KW);
    if (dx.data()) std::fill(dx.begin(), dx.end(), T{});
    for (index_t n = 0; n < N; ++n)
      for (index_t co = 0; co < Co; ++co)
        for (index_t oy = 0; oy < OH; ++oy)
          for (index_t ox = 0; ox < OW; ++ox) {
            const T g = dy[((n * Co + co) * OH + oy) * OW + ox];
            if (db.data()) db[co] += g;
            for (index_t ci = 0; ci < Ci; ++ci)
              for (index_t ky = 0; ky < KH; ++ky) {
                const index_t iy = oy * p.stride - p.pad_top + ky;
                if (iy < 0 || iy >= H) continue;
                for (index_t kx = 0; kx < KW; ++kx) {
                  const index_t ix = ox * p.stride - p.pad_left + kx;
                  if (ix < 0 || ix >= W) continue;
                  const index_t wi = ((co * Ci + ci) * KH + ky) * KW + kx;
                  const index_t xi = ((n * Ci + ci) * H + iy) * W + ix;
                  if (dx.data()) dx[xi] += g * w[wi];
                  if (dw.data()) dw[wi] += g * x[xi];
                }
              }
          }
  }

  // ---- GroupNorm ------------------------------------------------------------
  // x[N,C,*]: for each (n, g) over the C/G channels of group g and all spatial
  // positions: mean, biased variance var, rstd = 1/sqrt(var + eps),
  // y = (x - mean) * rstd * gamma[c] + beta[c] (gamma/beta empty: 1 and 0).
  // mean and rstd are saved per (n, g), [N*G] in n-major order.
  template <Scalar T>
  static void invoke(ops::group_norm_forward_t, ConstTensorView<T> x, int groups, T eps, ConstTensorView<T> gamma,
                     ConstTensorView<T> beta, TensorView<T> y, TensorView<T> mean, TensorView<T> rstd) {
    const index_t N = x.dim(0), C = x.dim(1), S = (N > 0 && C > 0) ? x.numel() / (N * C) : 0, G = groups, cg = C / G;
    for (index_t n = 0; n < N; ++n)
      for (index_t g = 0; g < G; ++g) {
        const T* xs = x.data() + (n * C + g * cg) * S;
        const index_t count = cg * S;
        T sum{};
        for (index_t i = 0; i < count; ++i) sum += xs[i];
        const T mu = sum / static_cast<T>(count);
        T sq{};
        for (index_t i = 0; i < count; ++i) sq += (xs[i] - mu) * (xs[i] - mu);
        const T r = T{1} / std::sqrt(sq / static_cast<T>(count) + eps);
        mean[n * G + g] = mu;
        rstd[n * G + g] = r;
        for (index_t c = g * cg; c < (g + 1) * cg; ++c) {
          const T ga = gamma.data() ? gamma[c] : T{1}, be = beta.data() ? beta[c] : T{};
          for (index_t s = 0; s < S; ++s) {
            const index_t i = (n * C + c) * S + s;
            y[i] = (x[i] - mu) * r * ga + be;
          }
        }
      }
  }

  // With xhat = (x - mean) * rstd and gdy = dy * gamma, per (n, g) over its M elements:
  // dx = rstd * (gdy - mean(gdy) - xhat * mean(gdy * xhat));
  // dgamma[c] += sum dy * xhat;  dbeta[c] += sum dy.
  template <Scalar T>
  static void invoke(ops::group_norm_backward_t, ConstTensorView<T> x, int groups, ConstTensorView<T> gamma,
                     ConstTensorView<T> mean, ConstTensorView<T> rstd, ConstTensorView<T> dy, TensorView<T> dx,
                     TensorView<T> dgamma, TensorView<T> dbeta) {
    const index_t N = x.dim(0), C = x.dim(1), S = (N > 0 && C > 0) ? x.numel() / (N * C) : 0, G = groups, cg = C / G;
    for (index_t n = 0; n < N; ++n)
      for (index_t g = 0; g < G; ++g) {
        const T mu = mean[n * G + g], r = rstd[n * G + g];
        T sum_g{}, sum_gx{};
        for (index_t c = g * cg; c < (g + 1) * cg; ++c) {
          const T ga = gamma.data() ? gamma[c] : T{1};
          T dga{}, dbe{};
          for (index_t s = 0; s < S; ++s) {
            const index_t i = (n * C + c) * S + s;
            const T xhat = (x[i] - mu) * r;
            sum_g += dy[i] * ga;
            sum_gx += dy[i] * ga * xhat;
            dga += dy[i] * xhat;
            dbe += dy[i];
          }
          if (dgamma.data()) dgamma[c] += dga;
          if (dbeta.data()) dbeta[c] += dbe;
        }
        if (!dx.data()) continue;
        const T M = static_cast<T>(cg * S);
        const T mean_g = sum_g / M, mean_gx = sum_gx / M;
        for (index_t c = g * cg; c < (g + 1) * cg; ++c) {
          const T ga = gamma.data() ? gamma[c] : T{1};
          for (index_t s = 0; s < S; ++s) {
            const index_t i = (n * C + c) * S + s;
            const T xhat = (x[i] - mu) * r;
            dx[i] = r * (dy[i] * ga - mean_g - xhat * mean_gx);
          }
        }
      }
  }

  // ---- SiLU -----------------------------------------------------------------
  // y = x * sigmoid(x);  dx = dy * s * (1 + x * (1 - s)) with s = sigmoid(x).
  template <Scalar T>
  static void invoke(ops::silu_forward_t, ConstTensorView<T> x, TensorView<T> y) {
    for (index_t i = 0; i < x.numel(); ++i) y[i] = x[i] / (T{1} + std::exp(-x[i]));
  }
  template <Scalar T>
  static void invoke(ops::silu_backward_t, ConstTensorView<T> x, ConstTensorView<T> dy, TensorView<T> dx) {
    for (index_t i = 0; i < x.numel(); ++i) {
      const T s = T{1} / (T{1} + std::exp(-x[i]));
      dx[i] = dy[i] * s * (T{1} + x[i] * (T{1} - s));
    }
  }

  // ---- Nearest 2x upsampling ------------------------------------------------
  // x[N,C,H,W] -> y[N,C,2H,2W], y[.., oy, ox] = x[.., oy/2, ox/2].
  template <Scalar T>
  static void invoke(ops::upsample_nearest2x_forward_t, ConstTensorView<T> x, TensorView<T> y) {
    const index_t P = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
    for (index_t p = 0; p < P; ++p)
      for (index_t oy = 0; oy < 2 * H; ++oy)
        for (index_t ox = 0; ox < 2 * W; ++ox) y[(p * 2 * H + oy) * 2 * W + ox] = x[(p * H + oy / 2) * W + ox / 2];
  }
  // (dy[N,C,2H,2W], dx[N,C,H,W]=): dx is the sum of each 2x2 block of dy.
  template <Scalar T>
  static void invoke(ops::upsample_nearest2x_backward_t, ConstTensorView<T> dy, TensorView<T> dx) {
    const index_t P = dx.dim(0) * dx.dim(1), H = dx.dim(2), W = dx.dim(3);
    for (index_t p = 0; p < P; ++p)
      for (index_t iy = 0; iy < H; ++iy)
        for (index_t ix = 0; ix < W; ++ix) {
          const T* d = dy.data() + (p * 2 * H + 2 * iy) * 2 * W + 2 * ix;
          dx[(p * H + iy) * W + ix] = d[0] + d[1] + d[2 * W] + d[2 * W + 1];
        }
  }

  // ---- GroupNorm + SiLU: the composition, by definition ------------------------
  template <Scalar T>
  static void invoke(ops::group_norm_silu_forward_t, ConstTensorView<T> x, int groups, T eps, ConstTensorView<T> gamma,
                     ConstTensorView<T> beta, TensorView<T> y, TensorView<T> mean, TensorView<T> rstd) {
    run(ops::group_norm_forward, x, groups, eps, gamma, beta, y, mean, rstd);
    run(ops::silu_forward, ConstTensorView<T>(y), y);
  }
  template <Scalar T>
  static void invoke(ops::group_norm_silu_backward_t, ConstTensorView<T> x, int groups, ConstTensorView<T> gamma,
                     ConstTensorView<T> beta, ConstTensorView<T> mean, ConstTensorView<T> rstd, ConstTensorView<T> dy,
                     TensorView<T> dx, TensorView<T> dgamma, TensorView<T> dbeta) {
    // u = group_norm(x) from the saved statistics, as in group_norm_forward.
    const index_t N = x.dim(0), C = x.dim(1), S = (N > 0 && C > 0) ? x.numel() / (N * C) : 0, G = groups, cg = C / G;
    Tensor<T> u(x.shape()), du(x.shape());
    for (index_t n = 0; n < N; ++n)
      for (index_t c = 0; c < C; ++c) {
        const T mu = mean[n * G + c / cg], r = rstd[n * G + c / cg];
        const T ga = gamma.data() ? gamma[c] : T{1}, be = beta.data() ? beta[c] : T{};
        for (index_t s = 0; s < S; ++s) {
          const index_t i = (n * C + c) * S + s;
          u[i] = (x[i] - mu) * r * ga + be;
        }
      }
    run(ops::silu_backward, u.cview(), dy, du.view());
    run(ops::group_norm_backward, x, groups, gamma, mean, rstd, du.cview(), dx, dgamma, dbeta);
  }

  // ---- Glue -----------------------------------------------------------------
  template <Scalar T>
  static void invoke(ops::add_t, ConstTensorView<T> a, ConstTensorView<T> b, T alpha, TensorView<T> y) {
    for (index_t i = 0; i < a.numel(); ++i) y[i] = alpha * (b.data() ? a[i] + b[i] : a[i]);
  }
  template <Scalar T>
  static void invoke(ops::add_channel_bias_t, ConstTensorView<T> x, ConstTensorView<T> e, TensorView<T> y) {
    const index_t NC = e.numel(), S = NC ? x.numel() / NC : 0;
    for (index_t q = 0; q < NC; ++q)
      for (index_t s = 0; s < S; ++s) y[q * S + s] = x[q * S + s] + e[q];
  }
  template <Scalar T>
  static void invoke(ops::channel_sum_t, ConstTensorView<T> x, TensorView<T> y) {
    const index_t NC = y.numel(), S = NC ? x.numel() / NC : 0;
    for (index_t q = 0; q < NC; ++q) {
      T acc{};
      for (index_t s = 0; s < S; ++s) acc += x[q * S + s];
      y[q] = acc;
    }
  }
  template <Scalar T>
  static void invoke(ops::transpose_t, ConstTensorView<T> x, index_t n, index_t a, index_t b, TensorView<T> y) {
    for (index_t m = 0; m < n; ++m)
      for (index_t i = 0; i < a; ++i)
        for (index_t j = 0; j < b; ++j) y[(m * b + j) * a + i] = x[(m * a + i) * b + j];
  }
  // Per image m: sa = a.numel() / N values of a, then sb of b.
  template <Scalar T>
  static void invoke(ops::concat_channels_t, ConstTensorView<T> a, ConstTensorView<T> b, TensorView<T> y) {
    const index_t N = y.dim(0), sa = N ? a.numel() / N : 0, sb = N ? b.numel() / N : 0;
    for (index_t m = 0; m < N; ++m) {
      for (index_t i = 0; i < sa; ++i) y[m * (sa + sb) + i] = a[m * sa + i];
      for (index_t i = 0; i < sb; ++i) y[m * (sa + sb) + sa + i] = b[m * sb + i];
    }
  }
  template <Scalar T>
  static void invoke(ops::split_channels_t, ConstTensorView<T> y, TensorView<T> a, TensorView<T> b) {
    const index_t N = y.dim(0), sa = N ? a.numel() / N : 0, sb = N ? b.numel() / N : 0;
    for (index_t m = 0; m < N; ++m) {
      for (index_t i = 0; i < sa; ++i) a[m * sa + i] = y[m * (sa + sb) + i];
      for (index_t i = 0; i < sb; ++i) b[m * sb + i] = y[m * (sa + sb) + sa + i];
    }
  }

  // ---- Attention ------------------------------------------------------------
  // For each batch n and head h (channels h*d .. h*d+d-1, d = C / heads):
  //   S[i,j] = scale * sum_c q[n,i,c] k[n,j,c]
  //   P[i,:] = softmax(S[i,:])  (the row maximum is subtracted before exp)
  //   out[n,i,c] = sum_j P[i,j] v[n,j,c]
  // probs[n,h,i,j] = P[i,j] is saved for backward.
  template <Scalar T>
  static void invoke(ops::attention_forward_t, ConstTensorView<T> q, ConstTensorView<T> k, ConstTensorView<T> v,
                     int heads, T scale, TensorView<T> out, TensorView<T> probs) {
    const index_t N = q.dim(0), L = q.dim(1), C = q.dim(2), d = C / heads;
    for (index_t n = 0; n < N; ++n)
      for (index_t h = 0; h < heads; ++h) {
        T* P = probs.data() + (n * heads + h) * L * L;
        for (index_t i = 0; i < L; ++i) {
          T* row = P + i * L;
          for (index_t j = 0; j < L; ++j) {
            T acc{};
            for (index_t c = h * d; c < (h + 1) * d; ++c) acc += q[(n * L + i) * C + c] * k[(n * L + j) * C + c];
            row[j] = scale * acc;
          }
          const T mx = *std::max_element(row, row + L);
          T sum{};
          for (index_t j = 0; j < L; ++j) sum += (row[j] = std::exp(row[j] - mx));
          for (index_t j = 0; j < L; ++j) row[j] /= sum;
          for (index_t c = h * d; c < (h + 1) * d; ++c) {
            T acc{};
            for (index_t j = 0; j < L; ++j) acc += row[j] * v[(n * L + j) * C + c];
            out[(n * L + i) * C + c] = acc;
          }
        }
      }
  }

  // dP = dout v^T;  dS[i,j] = P[i,j] * (dP[i,j] - sum_j' P[i,j'] dP[i,j']);
  // dq = scale * dS k;  dk = scale * dS^T q;  dv = P^T dout  (per batch and head).
  template <Scalar T>
  static void invoke(ops::attention_backward_t, ConstTensorView<T> q, ConstTensorView<T> k, ConstTensorView<T> v,
                     ConstTensorView<T> probs, int heads, T scale, ConstTensorView<T> dout, TensorView<T> dq,
                     TensorView<T> dk, TensorView<T> dv) {
    const index_t N = q.dim(0), L = q.dim(1), C = q.dim(2), d = C / heads;
    if (dq.data()) std::fill(dq.begin(), dq.end(), T{});
    if (dk.data()) std::fill(dk.begin(), dk.end(), T{});
    if (dv.data()) std::fill(dv.begin(), dv.end(), T{});
    for (index_t n = 0; n < N; ++n)
      for (index_t h = 0; h < heads; ++h) {
        const T* P = probs.data() + (n * heads + h) * L * L;
        for (index_t i = 0; i < L; ++i) {
          const T* row = P + i * L;
          // dv[j] += P[i,j] * dout[i]
          if (dv.data())
            for (index_t j = 0; j < L; ++j)
              for (index_t c = h * d; c < (h + 1) * d; ++c)
                dv[(n * L + j) * C + c] += row[j] * dout[(n * L + i) * C + c];
          if (!dq.data() && !dk.data()) continue;
          // dP[i,j] and the softmax Jacobian.
          T dot{};
          for (index_t j = 0; j < L; ++j) {
            T dp{};
            for (index_t c = h * d; c < (h + 1) * d; ++c) dp += dout[(n * L + i) * C + c] * v[(n * L + j) * C + c];
            dot += row[j] * dp;
          }
          for (index_t j = 0; j < L; ++j) {
            T dp{};
            for (index_t c = h * d; c < (h + 1) * d; ++c) dp += dout[(n * L + i) * C + c] * v[(n * L + j) * C + c];
            const T ds = scale * row[j] * (dp - dot);
            for (index_t c = h * d; c < (h + 1) * d; ++c) {
              if (dq.data()) dq[(n * L + i) * C + c] += ds * k[(n * L + j) * C + c];
              if (dk.data()) dk[(n * L + j) * C + c] += ds * q[(n * L + i) * C + c];
            }
          }
        }
      }
  }

  // diffusers' float64 path: scores in T (the gemm above), softmax in float32,
  // probabilities back to T, then probs v (gemm).
  template <Scalar T>
  static void invoke(ops::attention_forward_float32_softmax_t, ConstTensorView<T> q, ConstTensorView<T> k,
                     ConstTensorView<T> v, int heads, T scale, TensorView<T> out, TensorView<T> probs) {
    const index_t N = q.dim(0), L = q.dim(1), ld = q.dim(2), d = ld / heads;
    for (index_t n = 0; n < N; ++n)
      for (index_t h = 0; h < heads; ++h) {
        T* P = probs.data() + (n * heads + h) * L * L;
        const index_t off = n * L * ld + h * d;
        invoke(ops::gemm, Trans::No, Trans::Yes, L, L, d, scale, q.data() + off, ld, k.data() + off, ld, T{0}, P, L);
        for (index_t i = 0; i < L; ++i) softmax_row_float32(P + i * L, L);
        invoke(ops::gemm, Trans::No, Trans::No, L, d, L, T{1}, static_cast<const T*>(P), L, v.data() + off, ld, T{0},
               out.data() + off, ld);
      }
  }
  // One row of scores, in place: max, exp and sum in float32, then scaled by
  // the float32 reciprocal of the sum.
  template <Scalar T>
  static void softmax_row_float32(T* row, index_t L) {
    float mx = static_cast<float>(row[0]);
    for (index_t j = 1; j < L; ++j) mx = std::max(mx, static_cast<float>(row[j]));
    float sum = 0.0f;
    for (index_t j = 0; j < L; ++j) {
      const float e = std::exp(static_cast<float>(row[j]) - mx);
      row[j] = static_cast<T>(e);
      sum += e;
    }
    const float r = 1.0f / sum;
    for (index_t j = 0; j < L; ++j) row[j] = static_cast<T>(static_cast<float>(row[j]) * r);
  }

  // ---- Element-wise maps and copies ---------------------------------------------
  template <Scalar T>
  static void invoke(ops::affine_t, ConstTensorView<T> x, T a, T b, TensorView<T> y) {
    for (index_t i = 0; i < x.numel(); ++i) y[i] = a * x[i] + b;
  }
  template <Scalar T>
  static void invoke(ops::mul_t, ConstTensorView<T> a, ConstTensorView<T> b, TensorView<T> y) {
    for (index_t i = 0; i < a.numel(); ++i) y[i] = a[i] * b[i];
  }
  template <Scalar T>
  static void invoke(ops::fill_t, T value, TensorView<T> y) {
    for (index_t i = 0; i < y.numel(); ++i) y[i] = value;
  }
  template <Scalar T>
  static void invoke(ops::copy_t, ConstTensorView<T> x, TensorView<T> y) {
    for (index_t i = 0; i < x.numel(); ++i) y[i] = x[i];
  }
  template <Scalar T>
  static void invoke(ops::copy_columns_t, ConstTensorView<T> x, index_t x_col, TensorView<T> y, index_t y_col,
                     index_t width) {
    const index_t R = x.rank() ? x.dim(0) : 0;
    if (R == 0) return;
    const index_t wx = x.numel() / R, wy = y.numel() / R;
    for (index_t r = 0; r < R; ++r)
      for (index_t j = 0; j < width; ++j) y[r * wy + y_col + j] = x[r * wx + x_col + j];
  }
  template <Scalar T>
  static void invoke(ops::copy_to_host_t, ConstTensorView<T> x, TensorView<T> y) {
    invoke(ops::copy, x, y);
  }
  template <Scalar T>
  static void invoke(ops::copy_from_host_t, ConstTensorView<T> x, TensorView<T> y) {
    invoke(ops::copy, x, y);
  }

  // ---- Layers' own steps ------------------------------------------------------------
  template <Scalar T>
  static void invoke(ops::scale_shift_forward_t, ConstTensorView<T> x, ConstTensorView<T> e, TensorView<T> y) {
    const index_t N = x.dim(0), C = x.dim(1), S = N * C != 0 ? x.numel() / (N * C) : 0;
    for (index_t n = 0; n < N; ++n)
      for (index_t c = 0; c < C; ++c) {
        const T sc = T{1} + e[n * 2 * C + c], sh = e[n * 2 * C + C + c];
        const index_t base = (n * C + c) * S;
        for (index_t s = 0; s < S; ++s) y[base + s] = x[base + s] * sc + sh;
      }
  }
  template <Scalar T>
  static void invoke(ops::scale_shift_backward_t, ConstTensorView<T> x, ConstTensorView<T> e, ConstTensorView<T> dy,
                     TensorView<T> dx, TensorView<T> de) {
    const index_t N = x.dim(0), C = x.dim(1), S = N * C != 0 ? x.numel() / (N * C) : 0;
    for (index_t n = 0; n < N; ++n)
      for (index_t c = 0; c < C; ++c) {
        const T sc = T{1} + e[n * 2 * C + c];
        const index_t base = (n * C + c) * S;
        T dscale{}, dshift{};
        for (index_t s = 0; s < S; ++s) {
          dscale += dy[base + s] * x[base + s];
          dshift += dy[base + s];
          dx[base + s] = dy[base + s] * sc;
        }
        de[n * 2 * C + c] = dscale;
        de[n * 2 * C + C + c] = dshift;
      }
  }
  template <Scalar T>
  static void invoke(ops::embedding_forward_t, ConstTensorView<T> table, std::span<const std::int64_t> labels,
                     TensorView<T> y) {
    const index_t D = table.dim(1);
    for (std::size_t i = 0; i < labels.size(); ++i)
      for (index_t j = 0; j < D; ++j) y[static_cast<index_t>(i) * D + j] = table[labels[i] * D + j];
  }
  template <Scalar T>
  static void invoke(ops::embedding_backward_t, std::span<const std::int64_t> labels, ConstTensorView<T> dy,
                     TensorView<T> dtable) {
    const index_t D = dtable.dim(1);
    for (std::size_t i = 0; i < labels.size(); ++i)
      for (index_t j = 0; j < D; ++j) dtable[labels[i] * D + j] += dy[static_cast<index_t>(i) * D + j];
  }
  template <Scalar T>
  static void invoke(ops::timestep_embedding_t, std::span<const double> t, TimestepEmbeddingParams p,
                     TensorView<T> y) {
    if (p.float32 || std::is_same_v<T, float>)
      timestep_embedding_in<float>(t, p, y);
    else
      timestep_embedding_in<T>(t, p, y);
  }
  // Evaluates in U the way diffusers' torch ops do: each product, quotient and
  // function rounded to U.
  template <class U, Scalar T>
  static void timestep_embedding_in(std::span<const double> t, const TimestepEmbeddingParams& p, TensorView<T> y) {
    const index_t dim = y.dim(1), half = dim / 2;
    const U neg_log = static_cast<U>(-std::log(p.max_period));
    const U denom = static_cast<U>(static_cast<double>(half) - p.freq_shift);
    const U scale = static_cast<U>(p.scale);
    for (std::size_t r = 0; r < t.size(); ++r) {
      const U tr = static_cast<U>(t[r]);
      T* row = y.data() + static_cast<index_t>(r) * dim;
      for (index_t i = 0; i < half; ++i) {
        const U exponent = static_cast<U>(neg_log * static_cast<U>(i)) / denom;
        const U freq = std::exp(exponent);
        U arg = static_cast<U>(tr * freq);
        if (p.scale != 1.0) arg = static_cast<U>(scale * arg);
        const U s = std::sin(arg), c = std::cos(arg);
        row[i] = static_cast<T>(p.flip_sin_to_cos ? c : s);
        row[half + i] = static_cast<T>(p.flip_sin_to_cos ? s : c);
      }
      if (dim % 2 == 1) row[dim - 1] = T{0};
    }
  }

  // ---- Training ---------------------------------------------------------------------
  template <Scalar T>
  static void invoke(ops::batch_axpby_t, std::span<const T> a, ConstTensorView<T> x, std::span<const T> b,
                     ConstTensorView<T> z, TensorView<T> y) {
    const index_t N = x.dim(0), per = N ? x.numel() / N : 0;
    for (index_t n = 0; n < N; ++n) {
      const T an = a[static_cast<std::size_t>(n)], bn = b[static_cast<std::size_t>(n)];
      for (index_t i = n * per; i < (n + 1) * per; ++i) y[i] = an * x[i] + bn * z[i];
    }
  }
  template <Scalar T>
  static double invoke(ops::mse_loss_t, ConstTensorView<T> pred, ConstTensorView<T> target,
                       std::span<const double> weights, TensorView<T> dpred) {
    const index_t n = pred.dim(0), per = n ? pred.numel() / n : 0;
    double loss = 0;
    for (index_t i = 0; i < n; ++i) {
      const double w = weights.empty() ? 1.0 : weights[static_cast<std::size_t>(i)];
      const T g = static_cast<T>(2.0 * w / static_cast<double>(n * per));
      double s = 0;
      for (index_t j = i * per; j < (i + 1) * per; ++j) {
        const T d = pred[j] - target[j];
        s += static_cast<double>(d) * static_cast<double>(d);
        dpred[j] = g * d;
      }
      loss += w * s / static_cast<double>(per);
    }
    return loss / static_cast<double>(n);
  }
  template <Scalar T>
  static double invoke(ops::sum_squares_t, ConstTensorView<T> x) {
    double s = 0;
    for (index_t i = 0; i < x.numel(); ++i) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    return s;
  }
  template <Scalar T>
  static bool invoke(ops::all_finite_t, ConstTensorView<T> x) {
    for (index_t i = 0; i < x.numel(); ++i)
      if (!std::isfinite(x[i])) return false;
    return true;
  }
  template <Scalar T>
  static void invoke(ops::adam_update_t, TensorView<T> p, ConstTensorView<T> g, TensorView<T> m, TensorView<T> v,
                     AdamParams s) {
    adam_update_range(s.coefficients<T>(), p.data(), g.data(), m.data(), v.data(), 0, p.numel());
  }
  // Elements [i0, i1) of an Adam step (Eigen's threads call it on their parts).
  template <Scalar T>
  static void adam_update_range(const AdamParams::Coefficients<T>& c, T* params, const T* grads, T* m, T* v,
                                index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) {
      T g = grads[i];
      T p = params[i];
      if (c.decoupled)
        p *= c.decay;
      else
        g += c.weight_decay * p;
      m[i] = c.beta1 * m[i] + (1 - c.beta1) * g;
      v[i] = c.beta2 * v[i] + (1 - c.beta2) * g * g;
      params[i] = p - c.step_size * m[i] / (std::sqrt(v[i]) * c.inv_sqrt_bc2 + c.eps);
    }
  }
  template <Scalar T>
  static void invoke(ops::ema_update_t, ConstTensorView<T> p, T decay, TensorView<T> shadow) {
    for (index_t i = 0; i < p.numel(); ++i) shadow[i] += (1 - decay) * (p[i] - shadow[i]);
  }
};

static_assert(Backend<Reference>);

}  // namespace ddpm::backend
