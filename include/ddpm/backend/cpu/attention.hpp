#pragma once
// Multi-head self-attention for backend::Cpu: per (batch, head) GEMMs on
// strided views of the head's channel slice (no copies), a row-wise stable
// softmax, and the backward pass as four more GEMMs.
//
// Threads: (batch, head) pairs are spread whole over the threads; the pairs
// left over (fewer than the thread count, e.g. batch 1 at sampling) are split
// by query rows (forward, and the dq half of backward) and by key rows (the
// dk, dv half of backward), so every output element has a single writer.
#include <algorithm>

#include "ddpm/backend/cpu/common.hpp"
#include "ddpm/backend/reference.hpp"

namespace ddpm::backend::cpu_detail {

// The work of a (batch, head) pair, in flops, is kAttn*Flops * L^2 * (d +
// kAttnSoftmaxDepth): 2 flops per score and unit of depth for each of the
// forward's two GEMMs and the backward's four, the softmax counted as that
// much extra depth.
inline constexpr double kAttnForwardFlops = 4.0;
inline constexpr double kAttnBackwardFlops = 8.0;
inline constexpr index_t kAttnSoftmaxDepth = 4;

struct AttnGeom {
  index_t N, L, C, H, d;
  template <class T>
  AttnGeom(ConstTensorView<T> q, int heads)
      : N(q.dim(0)), L(q.dim(1)), C(q.dim(2)), H(heads), d(heads > 0 ? q.dim(2) / heads : 0) {}
  index_t off(index_t pair) const { return (pair / H) * L * C + (pair % H) * d; }  // head slice start
  index_t poff(index_t pair) const { return pair * L * L; }
};

// The forward computes query rows in fixed chunks of this many, one pair of
// GEMM calls each, whichever thread runs them: Eigen's order of summation
// depends on the shape of the call, so fixed chunks give every output the
// same bits for every thread count. Row splits are multiples of it.
inline constexpr index_t kAttnRowChunk = 16;

// One chunk of query rows [i0, i1) of one (n, h) pair: probs rows and out rows.
template <class T>
void attn_fwd_chunk(const AttnGeom& g, index_t pair, index_t i0, index_t i1, const T* q, const T* k, const T* v,
                    T scale, T* out, T* probs) {
  const index_t o = g.off(pair), L = g.L;
  T* P = probs + g.poff(pair) + i0 * L;
  gemm_serial(Trans::No, Trans::Yes, i1 - i0, L, g.d, scale, q + o + i0 * g.C, g.C, k + o, g.C, T{0}, P, L);
  for (index_t i = 0; i < i1 - i0; ++i) {
    auto row = ArrMap<T>(P + i * L, L);
    const T mx = row.maxCoeff();
    row = (row - mx).exp();
    row *= T{1} / row.sum();
  }
  gemm_serial(Trans::No, Trans::No, i1 - i0, g.d, L, T{1}, P, L, v + o, g.C, T{0}, out + o + i0 * g.C, g.C);
}

// Query rows [i0, i1) of one (n, h) pair, i0 a multiple of kAttnRowChunk.
template <class T>
void attn_fwd_rows(const AttnGeom& g, index_t pair, index_t i0, index_t i1, const T* q, const T* k, const T* v,
                   T scale, T* out, T* probs) {
  for (index_t c = i0; c < i1; c += kAttnRowChunk)
    attn_fwd_chunk(g, pair, c, std::min(i1, c + kAttnRowChunk), q, k, v, scale, out, probs);
}

// Backward, first half, query rows [i0, i1): dS rows into ds (an L x L buffer)
// and dq rows.
template <class T>
void attn_bwd_query_rows(const AttnGeom& g, index_t pair, index_t i0, index_t i1, const T* k, const T* v,
                         const T* probs, T scale, const T* dout, T* dq, T* ds) {
  if (i1 <= i0) return;
  const index_t o = g.off(pair), L = g.L;
  const T* P = probs + g.poff(pair) + i0 * L;
  T* S = ds + i0 * L;
  // dP = dout v^T, then dS = P o (dP - rowsum(P o dP)).
  gemm_serial(Trans::No, Trans::Yes, i1 - i0, L, g.d, T{1}, dout + o + i0 * g.C, g.C, v + o, g.C, T{0}, S, L);
  for (index_t i = 0; i < i1 - i0; ++i) {
    const auto p = CArrMap<T>(P + i * L, L);
    auto s = ArrMap<T>(S + i * L, L);
    const T dot = (p * s).sum();
    s = p * (s - dot);
  }
  if (dq) gemm_serial(Trans::No, Trans::No, i1 - i0, g.d, L, scale, S, L, k + o, g.C, T{0}, dq + o + i0 * g.C, g.C);
}

// Backward, second half, key rows [j0, j1): dk and dv rows (needs all of dS).
template <class T>
void attn_bwd_key_rows(const AttnGeom& g, index_t pair, index_t j0, index_t j1, const T* q, const T* probs, T scale,
                       const T* dout, const T* ds, T* dk, T* dv) {
  if (j1 <= j0) return;
  const index_t o = g.off(pair), L = g.L;
  if (dk) gemm_serial(Trans::Yes, Trans::No, j1 - j0, g.d, L, scale, ds + j0, L, q + o, g.C, T{0}, dk + o + j0 * g.C, g.C);
  if (dv)
    gemm_serial(Trans::Yes, Trans::No, j1 - j0, g.d, L, T{1}, probs + g.poff(pair) + j0, L, dout + o, g.C, T{0},
                dv + o + j0 * g.C, g.C);
}

template <class T>
void run(ops::attention_forward_t, ConstTensorView<T> qv, ConstTensorView<T> kv, ConstTensorView<T> vv, int heads,
         T scale, TensorView<T> outv, TensorView<T> probsv) {
  const AttnGeom g(qv, heads);
  const index_t pairs = g.N * g.H;
  if (pairs == 0 || g.L == 0) return;
  const T *q = qv.data(), *k = kv.data(), *v = vv.data();
  T *out = outv.data(), *probs = probsv.data();
  const double work = kAttnForwardFlops * static_cast<double>(pairs) * static_cast<double>(g.L * g.L) *
                      static_cast<double>(g.d + kAttnSoftmaxDepth);
  const int T_ = threads_for(work, tuning().min_flops_per_thread);
  const index_t pb = pairs - pairs % T_;
  if (pb > 0)
    parallel(T_, [&](int tid, int parts) {
      const auto [a, b] = split_range(pb, parts, tid);
      for (index_t pr = a; pr < b; ++pr) attn_fwd_rows(g, pr, 0, g.L, q, k, v, scale, out, probs);
    });
  for (index_t pr = pb; pr < pairs; ++pr)
    parallel(T_, [&](int tid, int parts) {
      const auto [i0, i1] = split_range(g.L, parts, tid, kAttnRowChunk);
      attn_fwd_rows(g, pr, i0, i1, q, k, v, scale, out, probs);
    });
}

template <class T>
void run(ops::attention_backward_t, ConstTensorView<T> qv, ConstTensorView<T> kv, ConstTensorView<T> vv,
         ConstTensorView<T> probsv, int heads, T scale, ConstTensorView<T> doutv, TensorView<T> dqv, TensorView<T> dkv,
         TensorView<T> dvv) {
  const AttnGeom g(qv, heads);
  const index_t pairs = g.N * g.H;
  T *dq = dqv.data(), *dk = dkv.data(), *dv = dvv.data();
  if (pairs == 0 || (!dq && !dk && !dv)) return;
  if (g.L == 0) return;
  const T *q = qv.data(), *k = kv.data(), *v = vv.data(), *probs = probsv.data(), *dout = doutv.data();
  const bool need_ds = dq || dk;
  const double work = kAttnBackwardFlops * static_cast<double>(pairs) * static_cast<double>(g.L * g.L) *
                      static_cast<double>(g.d + kAttnSoftmaxDepth);
  const int T_ = threads_for(work, tuning().min_flops_per_thread);
  const index_t pb = pairs - pairs % T_;
  const std::size_t lsq = static_cast<std::size_t>(g.L * g.L);
  if (pb > 0)
    parallel(T_, [&](int tid, int parts) {
      const auto [a, b] = split_range(pb, parts, tid);
      if (b <= a) return;
      T* ds = need_ds ? scratch<T>(kAttn, lsq) : nullptr;
      for (index_t pr = a; pr < b; ++pr) {
        if (need_ds) attn_bwd_query_rows(g, pr, 0, g.L, k, v, probs, scale, dout, dq, ds);
        attn_bwd_key_rows(g, pr, 0, g.L, q, probs, scale, dout, ds, dk, dv);
      }
    });
  for (index_t pr = pb; pr < pairs; ++pr) {
    T* ds = need_ds ? scratch<T>(kPartial, lsq) : nullptr;  // shared by the threads, on the caller
    if (need_ds)
      parallel(T_, [&](int tid, int parts) {
        const auto [i0, i1] = split_range(g.L, parts, tid);
        attn_bwd_query_rows(g, pr, i0, i1, k, v, probs, scale, dout, dq, ds);
      });
    parallel(T_, [&](int tid, int parts) {
      const auto [j0, j1] = split_range(g.L, parts, tid);
      attn_bwd_key_rows(g, pr, j0, j1, q, probs, scale, dout, ds, dk, dv);
    });
  }
}

// diffusers' float64 numerics: per (batch, head) the threaded GEMM for the
// scores, Reference's float32 softmax row (the definition), the threaded GEMM
// for probs v; the same calls in the same order as a layer making them itself.
template <class T>
void run(ops::attention_forward_float32_softmax_t, ConstTensorView<T> qv, ConstTensorView<T> kv,
         ConstTensorView<T> vv, int heads, T scale, TensorView<T> outv, TensorView<T> probsv) {
  const index_t N = qv.dim(0), L = qv.dim(1), ld = qv.dim(2), d = heads > 0 ? ld / heads : 0;
  for (index_t n = 0; n < N; ++n)
    for (index_t h = 0; h < heads; ++h) {
      T* P = probsv.data() + (n * heads + h) * L * L;
      const index_t off = n * L * ld + h * d;
      run(ops::gemm, Trans::No, Trans::Yes, L, L, d, scale, qv.data() + off, ld, kv.data() + off, ld, T{0}, P, L);
      for (index_t i = 0; i < L; ++i) Reference::softmax_row_float32(P + i * L, L);
      run(ops::gemm, Trans::No, Trans::No, L, d, L, T{1}, static_cast<const T*>(P), L, vv.data() + off, ld, T{0},
          outv.data() + off, ld);
    }
}

}  // namespace ddpm::backend::cpu_detail
