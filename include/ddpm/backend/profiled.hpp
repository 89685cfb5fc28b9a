#pragma once
// backend::Profiled<B>: backend B with a wall-clock timer around every op.
//
//   using P = backend::Profiled<backend::Eigen>;
//   nn::UNet2D<float, P> model(config);
//   P::reset();  ...train or sample...
//   for (const auto& r : P::report()) std::printf("%s %d %.1f ms\n", ...);
//
// It answers "where does the time go" per op kind, threading included (a
// perf profile counts CPU time, so it cannot show one core idling while the
// other finishes an op). The time outside every op (the total minus the
// sum) is what nn/ and train/ spend in their own loops. The counters are
// process-wide and not synchronised: time from one thread at a time.
#include <algorithm>
#include <array>
#include <chrono>
#include <string_view>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::backend {

struct OpTime {
  std::string_view name;
  long long calls = 0;
  double seconds = 0;
};

template <Backend B>
struct Profiled {
  using memory_space = typename B::memory_space;

  enum Op : int {
    kGemm, kLinearFwd, kLinearBwd, kConvFwd, kConvBwd, kNormFwd, kNormBwd, kNormSiluFwd, kNormSiluBwd, kSiluFwd, kSiluBwd,
    kUpsampleFwd, kUpsampleBwd, kAttentionFwd, kAttentionBwd, kAdd, kAddChannelBias, kChannelSum, kTranspose, kConcat, kSplit, kOps
  };

  static constexpr std::string_view name() { return "profiled"; }
  static void set_num_threads(int n) { B::set_num_threads(n); }
  static int num_threads() { return B::num_threads(); }

  static void reset() { table() = {}; }
  // The ops that ran since the last reset, slowest first.
  static std::vector<OpTime> report() {
    static constexpr std::array<std::string_view, kOps> names{
        "gemm", "linear_forward", "linear_backward", "conv2d_forward", "conv2d_backward", "group_norm_forward",
        "group_norm_backward", "group_norm_silu_forward", "group_norm_silu_backward", "silu_forward", "silu_backward", "upsample_forward", "upsample_backward",
        "attention_forward", "attention_backward", "add", "add_channel_bias", "channel_sum", "transpose", "concat_channels", "split_channels"};
    std::vector<OpTime> out;
    for (int i = 0; i < kOps; ++i)
      if (table()[i].calls > 0) out.push_back({names[i], table()[i].calls, table()[i].seconds});
    std::sort(out.begin(), out.end(), [](const OpTime& a, const OpTime& b) { return a.seconds > b.seconds; });
    return out;
  }

  template <Scalar T>
  static void gemm(Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* A, index_t lda,
                   const T* Bm, index_t ldb, T beta, T* C, index_t ldc) {
    timed(kGemm, [&] { B::gemm(ta, tb, m, n, k, alpha, A, lda, Bm, ldb, beta, C, ldc); });
  }
  template <Scalar T>
  static void linear_forward(ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> b, TensorView<T> y) {
    timed(kLinearFwd, [&] { B::linear_forward(x, w, b, y); });
  }
  template <Scalar T>
  static void linear_backward(ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> dy, TensorView<T> dx,
                              TensorView<T> dw, TensorView<T> db) {
    timed(kLinearBwd, [&] { B::linear_backward(x, w, dy, dx, dw, db); });
  }
  template <Scalar T>
  static void conv2d_forward(ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> b, Conv2dParams p,
                             TensorView<T> y) {
    timed(kConvFwd, [&] { B::conv2d_forward(x, w, b, p, y); });
  }
  template <Scalar T>
  static void conv2d_backward(ConstTensorView<T> x, ConstTensorView<T> w, ConstTensorView<T> dy, Conv2dParams p,
                              TensorView<T> dx, TensorView<T> dw, TensorView<T> db) {
    timed(kConvBwd, [&] { B::conv2d_backward(x, w, dy, p, dx, dw, db); });
  }
  template <Scalar T>
  static void group_norm_forward(ConstTensorView<T> x, int groups, T eps, ConstTensorView<T> gamma,
                                 ConstTensorView<T> beta, TensorView<T> y, TensorView<T> mean, TensorView<T> rstd) {
    timed(kNormFwd, [&] { B::group_norm_forward(x, groups, eps, gamma, beta, y, mean, rstd); });
  }
  template <Scalar T>
  static void group_norm_backward(ConstTensorView<T> x, int groups, ConstTensorView<T> gamma, ConstTensorView<T> mean,
                                  ConstTensorView<T> rstd, ConstTensorView<T> dy, TensorView<T> dx,
                                  TensorView<T> dgamma, TensorView<T> dbeta) {
    timed(kNormBwd, [&] { B::group_norm_backward(x, groups, gamma, mean, rstd, dy, dx, dgamma, dbeta); });
  }
  template <Scalar T>
  static void group_norm_silu_forward(ConstTensorView<T> x, int groups, T eps, ConstTensorView<T> gamma,
                                      ConstTensorView<T> beta, TensorView<T> y, TensorView<T> mean,
                                      TensorView<T> rstd) {
    timed(kNormSiluFwd, [&] { B::group_norm_silu_forward(x, groups, eps, gamma, beta, y, mean, rstd); });
  }
  template <Scalar T>
  static void group_norm_silu_backward(ConstTensorView<T> x, int groups, ConstTensorView<T> gamma,
                                       ConstTensorView<T> beta, ConstTensorView<T> mean, ConstTensorView<T> rstd,
                                       ConstTensorView<T> dy, TensorView<T> dx, TensorView<T> dgamma,
                                       TensorView<T> dbeta) {
    timed(kNormSiluBwd, [&] { B::group_norm_silu_backward(x, groups, gamma, beta, mean, rstd, dy, dx, dgamma, dbeta); });
  }
  template <Scalar T>
  static void silu_forward(ConstTensorView<T> x, TensorView<T> y) {
    timed(kSiluFwd, [&] { B::silu_forward(x, y); });
  }
  template <Scalar T>
  static void silu_backward(ConstTensorView<T> x, ConstTensorView<T> dy, TensorView<T> dx) {
    timed(kSiluBwd, [&] { B::silu_backward(x, dy, dx); });
  }
  template <Scalar T>
  static void upsample_nearest2x_forward(ConstTensorView<T> x, TensorView<T> y) {
    timed(kUpsampleFwd, [&] { B::upsample_nearest2x_forward(x, y); });
  }
  template <Scalar T>
  static void upsample_nearest2x_backward(ConstTensorView<T> dy, TensorView<T> dx) {
    timed(kUpsampleBwd, [&] { B::upsample_nearest2x_backward(dy, dx); });
  }
  template <Scalar T>
  static void add(ConstTensorView<T> a, ConstTensorView<T> b, T alpha, TensorView<T> y) {
    timed(kAdd, [&] { B::add(a, b, alpha, y); });
  }
  template <Scalar T>
  static void add_channel_bias(ConstTensorView<T> x, ConstTensorView<T> e, TensorView<T> y) {
    timed(kAddChannelBias, [&] { B::add_channel_bias(x, e, y); });
  }
  template <Scalar T>
  static void channel_sum(ConstTensorView<T> x, TensorView<T> y) {
    timed(kChannelSum, [&] { B::channel_sum(x, y); });
  }
  template <Scalar T>
  static void transpose(ConstTensorView<T> x, index_t n, index_t a, index_t b, TensorView<T> y) {
    timed(kTranspose, [&] { B::transpose(x, n, a, b, y); });
  }
  template <Scalar T>
  static void concat_channels(ConstTensorView<T> a, ConstTensorView<T> b, TensorView<T> y) {
    timed(kConcat, [&] { B::concat_channels(a, b, y); });
  }
  template <Scalar T>
  static void split_channels(ConstTensorView<T> y, TensorView<T> a, TensorView<T> b) {
    timed(kSplit, [&] { B::split_channels(y, a, b); });
  }
  template <Scalar T>
  static void attention_forward(ConstTensorView<T> q, ConstTensorView<T> k, ConstTensorView<T> v, int heads,
                                T scale, TensorView<T> out, TensorView<T> probs) {
    timed(kAttentionFwd, [&] { B::attention_forward(q, k, v, heads, scale, out, probs); });
  }
  template <Scalar T>
  static void attention_backward(ConstTensorView<T> q, ConstTensorView<T> k, ConstTensorView<T> v,
                                 ConstTensorView<T> probs, int heads, T scale, ConstTensorView<T> dout,
                                 TensorView<T> dq, TensorView<T> dk, TensorView<T> dv) {
    timed(kAttentionBwd, [&] { B::attention_backward(q, k, v, probs, heads, scale, dout, dq, dk, dv); });
  }

 private:
  struct Counter {
    long long calls = 0;
    double seconds = 0;
  };
  static std::array<Counter, kOps>& table() {
    static std::array<Counter, kOps> t{};
    return t;
  }
  template <class F>
  static void timed(Op op, F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    auto& c = table()[op];
    ++c.calls;
    c.seconds += dt.count();
  }
};

}  // namespace ddpm::backend
