// backend::Cpu against backend::Reference, op by op, on random shapes
// (odd sizes, strides, asymmetric padding, absent bias/grads), in float and
// double, on 1 and 2 threads; plus the += convention for parameter gradients
// and run-to-run determinism. The [.bench] case (hidden by default) prints
// GFLOP/s: backend_test_cpu_vs_reference "[.bench]".
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/core/random.hpp"

namespace ops = ddpm::ops;
using ddpm::ConstTensorView;
using ddpm::index_t;
using ddpm::Rng;
using ddpm::Shape;
using ddpm::Tensor;
using ddpm::TensorView;
using E = ddpm::backend::Cpu;
using R = ddpm::backend::Reference;
using ddpm::backend::Conv2dParams;
using ddpm::backend::Trans;
using ddpm::backend::cpu_detail::ScopedTuning;
using ddpm::backend::cpu_detail::set_tuning;
using ddpm::backend::cpu_detail::tuning;
using ddpm::backend::cpu_detail::Tuning;

namespace {

template <class T>
Tensor<T> rnd(Shape s, Rng& rng, double scale = 1.0) {
  Tensor<T> t(s);
  for (auto& v : t) v = static_cast<T>(scale * rng.normal());
  return t;
}

template <class T>
Tensor<T> nans(Shape s) {
  return Tensor<T>(s, std::numeric_limits<T>::quiet_NaN());
}

// Relative tolerance per unit of sqrt(reduction length).
template <class T>
double base_tol() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

// max |got - want| <= tol * max(1, max |want|), NaN anywhere fails.
template <class T>
void expect_close(const Tensor<T>& got, const Tensor<T>& want, double tol, const std::string& what) {
  INFO(what << " shape " << want.shape().str());
  REQUIRE(got.shape() == want.shape());
  double err = 0, mag = 1;
  bool finite = true;
  for (index_t i = 0; i < want.numel(); ++i) {
    if (!std::isfinite(static_cast<double>(got[i]))) finite = false;
    err = std::max(err, std::abs(static_cast<double>(got[i]) - static_cast<double>(want[i])));
    mag = std::max(mag, std::abs(static_cast<double>(want[i])));
  }
  INFO("max abs err " << err << ", magnitude " << mag << ", tol " << tol);
  CHECK(finite);
  CHECK(err <= tol * mag);
}

template <class T>
bool identical(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::equal(a.begin(), a.end(), b.begin());
}

const int kThreadCounts[] = {1, 2};

struct ThreadGuard {
  int saved = E::num_threads();
  ~ThreadGuard() { E::set_num_threads(saved); }
};

// `t` with Winograd's limits lowered, so that small shapes take its path.
// (Tests change the tuning under a ScopedTuning, which restores it on exit,
// also when a REQUIRE throws.)
Tuning with_winograd_limits(Tuning t, index_t channels, index_t tiles) {
  t.winograd_min_channels = t.winograd_min_channels_small = channels;
  t.winograd_min_tiles = t.winograd_min_tiles_small = tiles;
  return t;
}

}  // namespace

TEST_CASE("cpu: identity and thread setting", "[backend]") {
  STATIC_REQUIRE(ddpm::backend::Backend<E>);
  CHECK(E::name() == "cpu");
  ThreadGuard guard;
  CHECK(E::num_threads() >= 1);
  E::set_num_threads(3);
  CHECK(E::num_threads() == 3);
  E::set_num_threads(0);
  CHECK(E::num_threads() == 1);
}

TEST_CASE("cpu: tuning is set as a whole, checked, and restored by ScopedTuning", "[backend]") {
  const Tuning before = tuning();
  // The documented defaults (tuning.hpp).
  const Tuning defaults;
  CHECK(defaults.use_packed_kernel == (DDPM_CPU_PACKED_KERNEL != 0));
  CHECK(defaults.im2col_tile_bytes == 96 * 1024);
  CHECK(defaults.wide_dw_tile_bytes == 128 * 1024);
  CHECK(defaults.winograd_min_tiles == 48);
  CHECK(defaults.min_flops_per_thread == 2e5);
  CHECK(defaults.min_touches_per_thread == 1e5);
  CHECK(defaults.min_norm_work_per_thread == 3e4);
  // A guard restores the tuning when its scope is left by an exception.
  Tuning changed = before;
  changed.im2col_tile_bytes = 12345;
  changed.use_wide = !before.use_wide;
  try {
    ScopedTuning guard(changed);
    CHECK(tuning().im2col_tile_bytes == 12345);
    CHECK(tuning().use_wide == !before.use_wide);
    throw std::runtime_error("leave the scope");
  } catch (const std::runtime_error&) {
  }
  CHECK(tuning().im2col_tile_bytes == before.im2col_tile_bytes);
  CHECK(tuning().use_wide == before.use_wide);
  // Values no op can run with are refused, and the tuning stays as it was.
  Tuning bad = before;
  bad.wide_fwd_tile_bytes = 0;
  CHECK_THROWS_AS(set_tuning(bad), ddpm::Error);
  bad = before;
  bad.min_flops_per_thread = 0;
  CHECK_THROWS_AS(set_tuning(bad), ddpm::Error);
  bad.min_flops_per_thread = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(set_tuning(bad), ddpm::Error);
  CHECK(tuning().wide_fwd_tile_bytes == before.wide_fwd_tile_bytes);
  CHECK(tuning().min_flops_per_thread == before.min_flops_per_thread);
}

#if DDPM_CPU_PACKED_KERNEL
TEST_CASE("cpu: the convolution reads its path switches from the tuning", "[backend]") {
  // The same layer by Winograd and by the direct path rounds differently: if
  // use_winograd were not read, the two results would be bit-identical.
  ThreadGuard threads;
  E::set_num_threads(1);
  ScopedTuning saved;
  Rng rng(12);
  const Conv2dParams p = Conv2dParams::symmetric(1, 1);
  auto x = rnd<float>({4, 32, 14, 14}, rng), w = rnd<float>({32, 32, 3, 3}, rng, 0.1);
  Tuning t = saved.saved();
  Tensor<float> y[2] = {Tensor<float>({4, 32, 14, 14}), Tensor<float>({4, 32, 14, 14})};
  for (int on : {0, 1}) {
    t.use_winograd = on;
    set_tuning(t);
    E::run(ops::conv2d_forward, x, w, {}, p, y[on]);
  }
  CHECK_FALSE(identical(y[0], y[1]));
  expect_close(y[1], y[0], 1e-5 * std::sqrt(32.0 * 9), "Winograd against direct");
}
#endif

// ---- GEMM -------------------------------------------------------------------------
TEMPLATE_TEST_CASE("cpu: gemm matches reference", "[backend]", float, double) {
  using T = TestType;
  ThreadGuard guard;
  Rng rng(1);
  struct Case {
    index_t m, n, k;
    double alpha, beta;
  };
  const Case cases[] = {{1, 1, 1, 1, 0},     {7, 5, 3, 2, 1},        {33, 17, 65, -0.5, 0.25},
                        {130, 150, 71, 1, 0}, {9, 260, 40, 1.5, -1}, {200, 3, 300, 1, 1}};
  for (int th : kThreadCounts) {
    E::set_num_threads(th);
    for (const auto& c : cases)
      for (Trans ta : {Trans::No, Trans::Yes})
        for (Trans tb : {Trans::No, Trans::Yes}) {
          // Stored with leading dims wider than the logical rows.
          const index_t ar = ta == Trans::No ? c.m : c.k, ac = ta == Trans::No ? c.k : c.m;
          const index_t br = tb == Trans::No ? c.k : c.n, bc = tb == Trans::No ? c.n : c.k;
          const index_t lda = ac + 3, ldb = bc + 1, ldc = c.n + 2;
          auto A = rnd<T>({ar, lda}, rng), B = rnd<T>({br, ldb}, rng);
          auto C0 = c.beta == 0 ? nans<T>({c.m, ldc}) : rnd<T>({c.m, ldc}, rng);
          auto Ce = C0, Cr = C0;
          E::run(ops::gemm, ta, tb, c.m, c.n, c.k, T(c.alpha), A.data(), lda, B.data(), ldb, T(c.beta), Ce.data(), ldc);
          R::run(ops::gemm, ta, tb, c.m, c.n, c.k, T(c.alpha), A.data(), lda, B.data(), ldb, T(c.beta), Cr.data(), ldc);
          // Compare the logical m x n block only; padding columns must be untouched.
          Tensor<T> ge({c.m, c.n}), gr({c.m, c.n});
          bool pad_kept = true;
          for (index_t i = 0; i < c.m; ++i)
            for (index_t j = 0; j < ldc; ++j) {
              if (j < c.n) {
                ge[i * c.n + j] = Ce[i * ldc + j];
                gr[i * c.n + j] = Cr[i * ldc + j];
              } else if (!(Ce[i * ldc + j] == C0[i * ldc + j] ||
                           (std::isnan(Ce[i * ldc + j]) && std::isnan(C0[i * ldc + j])))) {
                pad_kept = false;
              }
            }
          INFO("threads " << th << " m,n,k " << c.m << "," << c.n << "," << c.k << " ta " << int(ta) << " tb "
                          << int(tb));
          CHECK(pad_kept);
          expect_close(ge, gr, base_tol<T>() * std::sqrt(double(c.k)) * 4, "gemm");
        }
  }
}

// ---- Linear ---------------------------------------------------------------------
TEMPLATE_TEST_CASE("cpu: linear forward/backward match reference", "[backend]", float, double) {
  using T = TestType;
  ThreadGuard guard;
  Rng rng(2);
  struct Case {
    Shape x;
    index_t out;
  };
  const Case cases[] = {{{1, 1}, 1}, {{3, 7}, 5}, {{4, 6, 33}, 17}, {{64, 128}, 512}, {{37, 300}, 150}};
  for (int th : kThreadCounts) {
    E::set_num_threads(th);
    for (const auto& c : cases) {
      const index_t in = c.x.dim(-1);
      INFO("threads " << th << " x " << c.x.str() << " out " << c.out);
      auto x = rnd<T>(c.x, rng), w = rnd<T>({c.out, in}, rng), b = rnd<T>({c.out}, rng);
      Shape ys = c.x;
      ys[c.x.rank() - 1] = c.out;
      const double tol = base_tol<T>() * std::sqrt(double(in + c.out + x.numel() / in)) * 4;
      for (bool with_bias : {true, false}) {
        auto ye = nans<T>(ys), yr = nans<T>(ys);
        ConstTensorView<T> bv = with_bias ? ConstTensorView<T>(b) : ConstTensorView<T>{};
        E::run(ops::linear_forward, x, w, bv, ye);
        R::run(ops::linear_forward, x, w, bv, yr);
        expect_close(ye, yr, tol, with_bias ? "linear y" : "linear y (no bias)");
      }
      auto dy = rnd<T>(ys, rng);
      auto dxe = nans<T>(c.x), dxr = nans<T>(c.x);
      auto dw0 = rnd<T>({c.out, in}, rng), db0 = rnd<T>({c.out}, rng);  // += onto existing values
      auto dwe = dw0, dwr = dw0, dbe = db0, dbr = db0;
      E::run(ops::linear_backward, x, w, dy, dxe, dwe, dbe);
      R::run(ops::linear_backward, x, w, dy, dxr, dwr, dbr);
      expect_close(dxe, dxr, tol, "linear dx");
      expect_close(dwe, dwr, tol, "linear dw");
      expect_close(dbe, dbr, tol, "linear db");
      // Absent dx and db: dw alone, accumulated once more.
      E::run(ops::linear_backward, x, w, dy, TensorView<T>{}, dwe, TensorView<T>{});
      R::run(ops::linear_backward, x, w, dy, TensorView<T>{}, dwr, TensorView<T>{});
      expect_close(dwe, dwr, tol, "linear dw twice");
    }
  }
}

// ---- Conv2d ---------------------------------------------------------------------
namespace {
struct ConvCase {
  index_t N, Ci, H, W, Co, KH, KW;
  Conv2dParams p;
};

const ConvCase kConvCases[] = {
    {1, 1, 1, 1, 1, 1, 1, Conv2dParams::symmetric(1, 0)},     // 1x1 pointwise, tiny
    {2, 3, 5, 7, 4, 3, 3, Conv2dParams::symmetric(1, 1)},     // 3x3 same
    {3, 13, 15, 11, 17, 3, 3, Conv2dParams::symmetric(1, 1)}, // batch not a multiple of the threads
    {1, 13, 31, 31, 9, 3, 3, Conv2dParams::symmetric(1, 1)},  // batch 1, several pixel tiles
    {2, 5, 9, 7, 6, 3, 3, Conv2dParams::symmetric(2, 1)},     // stride 2, pad 1
    {3, 10, 16, 16, 12, 3, 3, {2, 0, 1, 0, 1}},               // diffusers downsample_padding=0
    {2, 10, 15, 13, 7, 3, 3, {2, 0, 1, 0, 1}},                // same, odd sizes
    {3, 6, 8, 9, 5, 3, 3, Conv2dParams::symmetric(1, 0)},     // 3x3 valid
    {3, 24, 12, 10, 20, 1, 1, Conv2dParams::symmetric(1, 0)}, // 1x1 pointwise, no im2col
    {1, 40, 14, 14, 72, 1, 1, Conv2dParams::symmetric(1, 0)}, // pointwise, batch 1
    {2, 7, 9, 9, 5, 1, 1, Conv2dParams::symmetric(2, 0)},     // 1x1 stride 2
    {2, 4, 10, 9, 3, 1, 1, Conv2dParams::symmetric(1, 1)},    // 1x1 padded
    {2, 6, 11, 10, 5, 3, 1, {1, 1, 1, 0, 0}},                 // non-square kernel
    {2, 3, 7, 8, 4, 2, 2, {2, 0, 0, 1, 0}},                   // even kernel, odd padding
    {5, 32, 14, 14, 33, 3, 3, Conv2dParams::symmetric(1, 1)}, // mnist-like, threaded
    {1, 1, 28, 28, 32, 3, 3, Conv2dParams::symmetric(1, 1)},  // one input channel
    // Winograd-eligible (3x3, stride 1, >= 16 channels in and out as the test sets it):
    {2, 16, 7, 7, 16, 3, 3, Conv2dParams::symmetric(1, 1)},   // odd size: half-empty edge tiles
    {1, 17, 9, 12, 20, 3, 3, {1, 0, 2, 1, 0}},                // asymmetric pads
    {2, 20, 6, 5, 18, 3, 3, Conv2dParams::symmetric(1, 0)},   // valid: dx pads by 2
    {1, 16, 4, 5, 16, 3, 3, Conv2dParams::symmetric(1, 3)},   // pad 3: dx takes the direct path
    {3, 64, 8, 8, 40, 3, 3, Conv2dParams::symmetric(1, 1)},   // blocks spanning images
    {1, 24, 30, 34, 24, 3, 3, Conv2dParams::symmetric(1, 1)}, // several blocks per image
};
}  // namespace

TEMPLATE_TEST_CASE("cpu: conv2d forward/backward match reference", "[backend]", float, double) {
  using T = TestType;
  ThreadGuard guard;
  Rng rng(3);
  // Four paths: Winograd F(2x2, 3x3) where eligible, packed AVX2 kernel
  // without im2col (stride 1), packed kernel on im2col tiles, Eigen's GEMM on
  // im2col tiles.
  ScopedTuning saved;
  Tuning t = with_winograd_limits(saved.saved(), 16, 1);  // the small cases below take the Winograd path too
  const bool packed_default = saved.saved().use_packed_kernel;
  const bool winograd_default = DDPM_CPU_PACKED_KERNEL && saved.saved().use_winograd;
  for (int th : kThreadCounts)
  for (int path : {0, 1, 2, 3}) {
    E::set_num_threads(th);
    t.use_winograd = path == 0 && winograd_default;
    t.use_packed_kernel = path < 3 && packed_default;
    t.use_wide = path <= 1;
    set_tuning(t);
    const bool winograd = t.use_winograd, packed = t.use_packed_kernel, wide = t.use_wide;
    for (const auto& c : kConvCases) {
      const index_t OH = c.p.out_h(c.H, c.KH), OW = c.p.out_w(c.W, c.KW);
      INFO("winograd " << winograd << " packed kernel " << packed << " wide " << wide << " threads " << th << " N,Ci,H,W " << c.N << "," << c.Ci << "," << c.H << "," << c.W << " Co " << c.Co
                      << " k " << c.KH << "x" << c.KW << " stride " << c.p.stride << " pad t/b/l/r " << c.p.pad_top
                      << "/" << c.p.pad_bottom << "/" << c.p.pad_left << "/" << c.p.pad_right);
      auto x = rnd<T>({c.N, c.Ci, c.H, c.W}, rng), w = rnd<T>({c.Co, c.Ci, c.KH, c.KW}, rng), b = rnd<T>({c.Co}, rng);
      const double K = double(c.Ci * c.KH * c.KW);
      const double tol = base_tol<T>() * std::sqrt(K + double(c.N * OH * OW) + double(c.Co * c.KH * c.KW)) * 2;
      const Shape ys{c.N, c.Co, OH, OW};
      for (bool with_bias : {true, false}) {
        auto ye = nans<T>(ys), yr = nans<T>(ys);
        ConstTensorView<T> bv = with_bias ? ConstTensorView<T>(b) : ConstTensorView<T>{};
        E::run(ops::conv2d_forward, x, w, bv, c.p, ye);
        R::run(ops::conv2d_forward, x, w, bv, c.p, yr);
        expect_close(ye, yr, tol, with_bias ? "conv y" : "conv y (no bias)");
      }
      auto dy = rnd<T>(ys, rng);
      auto dw0 = rnd<T>(w.shape(), rng), db0 = rnd<T>(b.shape(), rng);
      auto dxe = nans<T>(x.shape()), dxr = nans<T>(x.shape());
      auto dwe = dw0, dwr = dw0, dbe = db0, dbr = db0;
      E::run(ops::conv2d_backward, x, w, dy, c.p, dxe, dwe, dbe);
      R::run(ops::conv2d_backward, x, w, dy, c.p, dxr, dwr, dbr);
      expect_close(dxe, dxr, tol, "conv dx");
      expect_close(dwe, dwr, tol, "conv dw (+=)");
      expect_close(dbe, dbr, tol, "conv db (+=)");
      // Absent dx (first layer), then dx alone.
      E::run(ops::conv2d_backward, x, w, dy, c.p, TensorView<T>{}, dwe, dbe);
      R::run(ops::conv2d_backward, x, w, dy, c.p, TensorView<T>{}, dwr, dbr);
      expect_close(dwe, dwr, tol, "conv dw, no dx");
      expect_close(dbe, dbr, tol, "conv db, no dx");
      auto dx2 = nans<T>(x.shape());
      E::run(ops::conv2d_backward, x, w, dy, c.p, dx2, TensorView<T>{}, TensorView<T>{});
      expect_close(dx2, dxr, tol, "conv dx alone");
    }
  }
}

#if DDPM_CPU_PACKED_KERNEL
TEST_CASE("cpu: Winograd's float rounding error is close to the direct convolution's", "[backend]") {
  // A 128 -> 128 channel 3x3 layer, y, dx and dw in float by both paths,
  // against the same inputs convolved in double.
  ThreadGuard guard;
  ScopedTuning saved;
  Tuning t = with_winograd_limits(saved.saved(), 128, 1);  // this small batch too
  Rng rng(11);
  const Conv2dParams p = Conv2dParams::symmetric(1, 1);
  auto x = rnd<float>({2, 128, 9, 8}, rng), w = rnd<float>({128, 128, 3, 3}, rng, 0.03);
  auto dy = rnd<float>({2, 128, 9, 8}, rng);
  auto widen = [](const Tensor<float>& t) {
    Tensor<double> d(t.shape());
    for (index_t i = 0; i < t.numel(); ++i) d[i] = t[i];
    return d;
  };
  Tensor<double> yd({2, 128, 9, 8}), dxd(x.shape()), dwd(w.shape());
  R::run(ops::conv2d_forward, widen(x), widen(w), {}, p, yd);
  R::run(ops::conv2d_backward, widen(x), widen(w), widen(dy), p, dxd, dwd, TensorView<double>{});
  auto max_err = [](const Tensor<float>& got, const Tensor<double>& want) {
    double e = 0;
    for (index_t i = 0; i < want.numel(); ++i) e = std::max(e, std::abs(double(got[i]) - want[i]));
    return e;
  };
  double err[2][3];  // [winograd][y, dx, dw]
  for (int on : {0, 1}) {
    t.use_winograd = on;
    set_tuning(t);
    Tensor<float> y({2, 128, 9, 8}), dx(x.shape()), dw(w.shape());
    E::run(ops::conv2d_forward, x, w, {}, p, y);
    E::run(ops::conv2d_backward, x, w, dy, p, dx, dw, TensorView<float>{});
    err[on][0] = max_err(y, yd);
    err[on][1] = max_err(dx, dxd);
    err[on][2] = max_err(dw, dwd);
  }
  INFO("max abs error y: direct " << err[0][0] << ", Winograd " << err[1][0] << "; dx: direct " << err[0][1]
                                  << ", Winograd " << err[1][1] << "; dw: direct " << err[0][2] << ", Winograd "
                                  << err[1][2]);
  CHECK(err[1][0] < 4 * err[0][0]);
  CHECK(err[1][1] < 4 * err[0][1]);
  CHECK(err[1][2] < 4 * err[0][2]);
  CHECK(err[1][0] < 1e-5);  // outputs are O(1): sum of 1152 products of N(0,1) x 0.03 N(0,1)
}
#endif

// ---- GroupNorm -----------------------------------------------------------------
TEMPLATE_TEST_CASE("cpu: group_norm forward/backward match reference", "[backend]", float, double) {
  using T = TestType;
  ThreadGuard guard;
  Rng rng(4);
  struct Case {
    Shape x;
    int groups;
  };
  const Case cases[] = {{{1, 1, 1, 1}, 1},   {{2, 12, 5, 7}, 3},  {{3, 32, 4, 4}, 32}, {{5, 64, 14, 14}, 8},
                        {{2, 6, 9}, 2},      {{1, 24, 3, 3}, 24}, {{3, 10, 7, 5}, 5}};
  for (int th : kThreadCounts) {
    E::set_num_threads(th);
    for (const auto& c : cases) {
      INFO("threads " << th << " x " << c.x.str() << " groups " << c.groups);
      const index_t C = c.x[1], G = c.groups, N = c.x[0];
      auto x = rnd<T>(c.x, rng, 2.0);
      for (auto& v : x) v += T(0.5);  // a non-zero mean
      auto gamma = rnd<T>({C}, rng), beta = rnd<T>({C}, rng);
      const double tol = base_tol<T>() * std::sqrt(double(x.numel() / (N * G)) + 1) * 4;
      for (bool affine : {true, false}) {
        ConstTensorView<T> gv = affine ? ConstTensorView<T>(gamma) : ConstTensorView<T>{};
        ConstTensorView<T> bv = affine ? ConstTensorView<T>(beta) : ConstTensorView<T>{};
        auto ye = nans<T>(c.x), yr = nans<T>(c.x);
        auto me = nans<T>({N * G}), mr = nans<T>({N * G}), re = nans<T>({N * G}), rr = nans<T>({N * G});
        E::run(ops::group_norm_forward, x, c.groups, T(1e-5), gv, bv, ye, me, re);
        R::run(ops::group_norm_forward, x, c.groups, T(1e-5), gv, bv, yr, mr, rr);
        expect_close(ye, yr, tol, "gn y");
        expect_close(me, mr, tol, "gn mean");
        expect_close(re, rr, tol, "gn rstd");
        auto dy = rnd<T>(c.x, rng);
        auto dg0 = rnd<T>({C}, rng), db0 = rnd<T>({C}, rng);
        auto dxe = nans<T>(c.x), dxr = nans<T>(c.x);
        auto dge = dg0, dgr = dg0, dbe = db0, dbr = db0;
        E::run(ops::group_norm_backward, x, c.groups, gv, mr, rr, dy, dxe, dge, dbe);
        R::run(ops::group_norm_backward, x, c.groups, gv, mr, rr, dy, dxr, dgr, dbr);
        expect_close(dxe, dxr, tol, "gn dx");
        expect_close(dge, dgr, tol, "gn dgamma (+=)");
        expect_close(dbe, dbr, tol, "gn dbeta (+=)");
        // Absent dx, absent dbeta.
        E::run(ops::group_norm_backward, x, c.groups, gv, mr, rr, dy, TensorView<T>{}, dge, TensorView<T>{});
        R::run(ops::group_norm_backward, x, c.groups, gv, mr, rr, dy, TensorView<T>{}, dgr, TensorView<T>{});
        expect_close(dge, dgr, tol, "gn dgamma, no dx");

        // Fused with the SiLU that follows.
        auto se = nans<T>(c.x), sr = nans<T>(c.x);
        E::run(ops::group_norm_silu_forward, x, c.groups, T(1e-5), gv, bv, se, me, re);
        R::run(ops::group_norm_silu_forward, x, c.groups, T(1e-5), gv, bv, sr, mr, rr);
        expect_close(se, sr, tol, "gn+silu y");
        expect_close(me, mr, tol, "gn+silu mean");
        dge = dg0, dgr = dg0, dbe = db0, dbr = db0;
        E::run(ops::group_norm_silu_backward, x, c.groups, gv, bv, mr, rr, dy, dxe, dge, dbe);
        R::run(ops::group_norm_silu_backward, x, c.groups, gv, bv, mr, rr, dy, dxr, dgr, dbr);
        expect_close(dxe, dxr, tol, "gn+silu dx");
        expect_close(dge, dgr, tol, "gn+silu dgamma (+=)");
        expect_close(dbe, dbr, tol, "gn+silu dbeta (+=)");
      }
    }
  }
}

// ---- SiLU, upsampling -------------------------------------------------------------
TEMPLATE_TEST_CASE("cpu: silu and upsample match reference", "[backend]", float, double) {
  using T = TestType;
  ThreadGuard guard;
  Rng rng(5);
  const double tol = base_tol<T>() * 4;
  for (int th : kThreadCounts) {
    E::set_num_threads(th);
    for (index_t n : {index_t{1}, index_t{17}, index_t{1000}, index_t{100003}}) {
      INFO("threads " << th << " n " << n);
      auto x = rnd<T>({n}, rng, 4.0);
      if (n >= 4) x[0] = T(-120), x[1] = T(120), x[2] = T(-1000), x[3] = T(0);  // saturation
      auto ye = nans<T>({n}), yr = nans<T>({n});
      E::run(ops::silu_forward, x, ye);
      R::run(ops::silu_forward, x, yr);
      expect_close(ye, yr, tol, "silu y");
      auto dy = rnd<T>({n}, rng);
      auto dxe = nans<T>({n}), dxr = nans<T>({n});
      E::run(ops::silu_backward, x, dy, dxe);
      R::run(ops::silu_backward, x, dy, dxr);
      expect_close(dxe, dxr, tol, "silu dx");
    }
    for (Shape s : {Shape{1, 1, 1, 1}, Shape{2, 3, 5, 7}, Shape{4, 16, 14, 14}, Shape{2, 64, 7, 7}}) {
      INFO("threads " << th << " upsample " << s.str());
      auto x = rnd<T>(s, rng);
      const Shape ys{s[0], s[1], 2 * s[2], 2 * s[3]};
      auto ye = nans<T>(ys), yr = nans<T>(ys);
      E::run(ops::upsample_nearest2x_forward, x, ye);
      R::run(ops::upsample_nearest2x_forward, x, yr);
      CHECK(identical(ye, yr));
      auto dy = rnd<T>(ys, rng);
      auto dxe = nans<T>(s), dxr = nans<T>(s);
      E::run(ops::upsample_nearest2x_backward, dy, dxe);
      R::run(ops::upsample_nearest2x_backward, dy, dxr);
      expect_close(dxe, dxr, tol, "upsample dx");
    }
  }
}

// ---- Glue: add, mul, add_channel_bias, channel_sum, transpose, concat -----------------------
TEMPLATE_TEST_CASE("cpu: add, mul, channel bias, channel sum, transpose and concat match reference", "[backend]", float,
                   double) {
  using T = TestType;
  ThreadGuard guard;
  Rng rng(6);
  for (int th : kThreadCounts) {
    E::set_num_threads(th);
    // Small (inline) and large (threaded) sizes, odd plane sizes.
    for (Shape s : {Shape{1, 1, 1, 1}, Shape{2, 3, 5, 7}, Shape{32, 64, 14, 14}, Shape{3, 17, 9, 11}}) {
      INFO("threads " << th << " shape " << s.str());
      const auto a = rnd<T>(s, rng), b = rnd<T>(s, rng);
      for (double alpha : {1.0, 0.5}) {
        auto ye = nans<T>(s), yr = nans<T>(s);
        E::run(ops::add, a, b, T(alpha), ye);
        R::run(ops::add, a, b, T(alpha), yr);
        CHECK(identical(ye, yr));  // one rounding per element either way
        E::run(ops::add, a, {}, T(alpha), ye);
        R::run(ops::add, a, {}, T(alpha), yr);
        CHECK(identical(ye, yr));
      }
      {  // mul (dropout's mask): exact in both, also in place
        auto me = nans<T>(s), mr = nans<T>(s);
        E::run(ops::mul, a, b, me);
        R::run(ops::mul, a, b, mr);
        CHECK(identical(me, mr));
        CHECK(mr.data()[0] == a.data()[0] * b.data()[0]);
        auto in_place = a;
        E::run(ops::mul, in_place, b, in_place);
        CHECK(identical(in_place, mr));
      }
      auto acc = a;  // in place: y aliases a
      E::run(ops::add, acc, b, T{1}, acc);
      auto want = nans<T>(s);
      R::run(ops::add, a, b, T{1}, want);
      CHECK(identical(acc, want));

      const auto e = rnd<T>({s[0], s[1]}, rng);
      auto be = nans<T>(s), br = nans<T>(s);
      E::run(ops::add_channel_bias, a, e, be);
      R::run(ops::add_channel_bias, a, e, br);
      CHECK(identical(be, br));

      auto se = nans<T>({s[0], s[1]}), sr = nans<T>({s[0], s[1]});
      E::run(ops::channel_sum, a, se);
      R::run(ops::channel_sum, a, sr);
      expect_close(se, sr, base_tol<T>() * std::sqrt(double(s[2] * s[3])), "channel_sum");

      const index_t n = s[0], ca = s[1], cb = s[2] * s[3];
      auto te = nans<T>({n, cb, ca}), tr = nans<T>({n, cb, ca});
      E::run(ops::transpose, a, n, ca, cb, te);
      R::run(ops::transpose, a, n, ca, cb, tr);
      CHECK(identical(te, tr));
      auto back = nans<T>(s);
      E::run(ops::transpose, te, n, cb, ca, back);
      CHECK(identical(back, a));

      // Skip concatenation: b with other channel counts (one empty).
      for (index_t cs : {index_t{0}, index_t{1}, s[1], 2 * s[1] + 3}) {
        const auto skip = rnd<T>({s[0], cs, s[2], s[3]}, rng);
        const Shape cat{s[0], s[1] + cs, s[2], s[3]};
        auto ce = nans<T>(cat), cr = nans<T>(cat);
        E::run(ops::concat_channels, a, skip, ce);
        R::run(ops::concat_channels, a, skip, cr);
        CHECK(identical(ce, cr));
        auto ha = nans<T>(s), hb = nans<T>(skip.shape());
        E::run(ops::split_channels, ce, ha, hb);
        CHECK(identical(ha, a));
        CHECK(identical(hb, skip));
      }
    }
  }
}

// ---- Attention -------------------------------------------------------------------
TEMPLATE_TEST_CASE("cpu: attention forward/backward match reference", "[backend]", float, double) {
  using T = TestType;
  ThreadGuard guard;
  Rng rng(6);
  struct Case {
    index_t N, L, C;
    int heads;
  };
  const Case cases[] = {{1, 1, 1, 1},   {2, 5, 6, 3},    {2, 49, 64, 2}, {1, 17, 24, 3},
                        {3, 40, 48, 1}, {1, 100, 32, 1}, {1, 64, 64, 2}, {4, 16, 20, 5}};
  for (int th : kThreadCounts) {
    E::set_num_threads(th);
    for (const auto& c : cases) {
      INFO("threads " << th << " N,L,C " << c.N << "," << c.L << "," << c.C << " heads " << c.heads);
      const Shape s{c.N, c.L, c.C}, ps{c.N, c.heads, c.L, c.L};
      auto q = rnd<T>(s, rng), k = rnd<T>(s, rng), v = rnd<T>(s, rng);
      const index_t d = c.C / c.heads;
      const T scale = T(1) / std::sqrt(T(d));
      const double tol = base_tol<T>() * std::sqrt(double(c.L + d)) * 8;
      auto oe = nans<T>(s), orf = nans<T>(s), pe = nans<T>(ps), pr = nans<T>(ps);
      E::run(ops::attention_forward, q, k, v, c.heads, scale, oe, pe);
      R::run(ops::attention_forward, q, k, v, c.heads, scale, orf, pr);
      expect_close(oe, orf, tol, "attn out");
      expect_close(pe, pr, tol, "attn probs");
      auto dout = rnd<T>(s, rng);
      auto dqe = nans<T>(s), dke = nans<T>(s), dve = nans<T>(s);
      auto dqr = nans<T>(s), dkr = nans<T>(s), dvr = nans<T>(s);
      E::run(ops::attention_backward, q, k, v, pr, c.heads, scale, dout, dqe, dke, dve);
      R::run(ops::attention_backward, q, k, v, pr, c.heads, scale, dout, dqr, dkr, dvr);
      expect_close(dqe, dqr, tol, "attn dq");
      expect_close(dke, dkr, tol, "attn dk");
      expect_close(dve, dvr, tol, "attn dv");
      // Absent gradients are skipped, the others unchanged.
      auto dq2 = nans<T>(s), dv2 = nans<T>(s), dk2 = nans<T>(s);
      E::run(ops::attention_backward, q, k, v, pr, c.heads, scale, dout, dq2, TensorView<T>{}, TensorView<T>{});
      expect_close(dq2, dqr, tol, "attn dq alone");
      E::run(ops::attention_backward, q, k, v, pr, c.heads, scale, dout, TensorView<T>{}, TensorView<T>{}, dv2);
      expect_close(dv2, dvr, tol, "attn dv alone");
      E::run(ops::attention_backward, q, k, v, pr, c.heads, scale, dout, TensorView<T>{}, dk2, TensorView<T>{});
      expect_close(dk2, dkr, tol, "attn dk alone");
    }
  }
}

// ---- determinism -----------------------------------------------------------------
TEST_CASE("cpu: results are identical across runs with the same thread count", "[backend]") {
  using T = float;
  ThreadGuard guard;
  Rng rng(7);
  for (int th : {1, 2, 3}) {
    E::set_num_threads(th);
    INFO("threads " << th);
    const Conv2dParams p = Conv2dParams::symmetric(1, 1);
    auto x = rnd<T>({5, 24, 14, 14}, rng), w = rnd<T>({40, 24, 3, 3}, rng), b = rnd<T>({40}, rng);
    auto dy = rnd<T>({5, 40, 14, 14}, rng);
    auto q = rnd<T>({3, 49, 64}, rng), k = rnd<T>({3, 49, 64}, rng), v = rnd<T>({3, 49, 64}, rng);
    auto run = [&] {
      std::vector<Tensor<T>> r;
      Tensor<T> y({5, 40, 14, 14}), dx(x.shape()), dw(w.shape()), db(b.shape());
      E::run(ops::conv2d_forward, x, w, b, p, y);
      E::run(ops::conv2d_backward, x, w, dy, p, dx, dw, db);
      Tensor<T> gy(x.shape()), mean({5 * 8}), rstd({5 * 8}), gdx(x.shape()), dg({24}), dbe({24});
      E::run(ops::group_norm_forward, x, 8, 1e-5f, ConstTensorView<T>(w.data(), {24}), ConstTensorView<T>{}, gy, mean,
             rstd);
      E::run(ops::group_norm_backward, x, 8, ConstTensorView<T>(w.data(), {24}), mean, rstd, x, gdx, dg, dbe);
      Tensor<T> o(q.shape()), pr({3, 2, 49, 49}), dq(q.shape()), dk(q.shape()), dv(q.shape());
      E::run(ops::attention_forward, q, k, v, 2, 0.125f, o, pr);
      E::run(ops::attention_backward, q, k, v, pr, 2, 0.125f, o, dq, dk, dv);
      Tensor<T> c({70, 90});
      E::run(ops::gemm, Trans::No, Trans::Yes, 70, 90, 336, 1.0f, x.data(), 336, dy.data(), 336, 0.0f, c.data(), 90);
      for (auto* t : {&y, &dx, &dw, &db, &gy, &gdx, &dg, &dbe, &o, &pr, &dq, &dk, &dv, &c}) r.push_back(*t);
      return r;
    };
    const auto a = run(), bb = run();
    for (std::size_t i = 0; i < a.size(); ++i) {
      INFO("output " << i);
      CHECK(identical(a[i], bb[i]));
    }
  }
}

TEST_CASE("cpu: inference ops give the same bits for every thread count, batch 1 included", "[backend]") {
  // Sampling one image (batch 1) splits a GEMM or an attention head's rows
  // over the threads; the fixed chunks keep every element's sums the same.
  using T = float;
  ThreadGuard guard;
  Rng rng(8);
  for (const index_t L : {49, 196, 7}) {
    INFO("tokens " << L);
    auto x = rnd<T>({L, 64}, rng), w = rnd<T>({96, 64}, rng), b = rnd<T>({96}, rng);
    auto q = rnd<T>({1, L, 64}, rng), k = rnd<T>({1, L, 64}, rng), v = rnd<T>({1, L, 64}, rng);
    auto wide = rnd<T>({8, 200}, rng), w2 = rnd<T>({300, 200}, rng);
    auto run = [&] {
      Tensor<T> y({L, 96}), o(q.shape()), pr({1, 1, L, L}), o32(q.shape()), pr32({1, 1, L, L}), c({8, 300});
      E::run(ops::linear_forward, x, w, b, y);
      E::run(ops::attention_forward, q, k, v, 1, 0.125f, o, pr);
      E::run(ops::attention_forward_float32_softmax, q, k, v, 1, 0.125f, o32, pr32);
      E::run(ops::gemm, Trans::No, Trans::Yes, 8, 300, 200, 1.0f, wide.data(), 200, w2.data(), 200, 0.0f, c.data(), 300);
      return std::vector<Tensor<T>>{y, o, pr, o32, c};
    };
    E::set_num_threads(1);
    const auto one = run();
    for (int th : {2, 3}) {
      E::set_num_threads(th);
      const auto many = run();
      for (std::size_t i = 0; i < one.size(); ++i) {
        INFO("threads " << th << ", output " << i);
        CHECK(identical(one[i], many[i]));
      }
    }
  }
}

// ---- timing (hidden: run with "[.bench]") -------------------------------------------
// Prints the median wall-clock rate and, because the machine is usually shared,
// the best rate per second of process CPU time (what the kernels do when they
// have the cores to themselves, summed over threads).
namespace {
struct Timing {
  double wall, cpu;  // median wall seconds, best CPU seconds
};
double process_cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }
template <class F>
Timing time_it(F&& f, int reps) {
  f();  // warm-up (workspaces, pool)
  std::vector<double> ws, cs;
  for (int i = 0; i < reps; ++i) {
    const double c0 = process_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ws.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cs.push_back(process_cpu_seconds() - c0);
  }
  std::sort(ws.begin(), ws.end());
  return {ws[ws.size() / 2], *std::min_element(cs.begin(), cs.end())};
}
}  // namespace

TEST_CASE("cpu: GFLOP/s of gemm and conv3x3", "[.bench]") {
  using T = float;
  ThreadGuard guard;
  Rng rng(8);
  for (int th : {1, 2}) {
    E::set_num_threads(th);
    {
      const index_t n = 1024;
      auto A = rnd<T>({n, n}, rng), B = rnd<T>({n, n}, rng);
      Tensor<T> C({n, n});
      const auto t = time_it(
          [&] { E::run(ops::gemm, Trans::No, Trans::No, n, n, n, 1.0f, A.data(), n, B.data(), n, 0.0f, C.data(), n); },
          9);
      const double fl = 2.0 * n * n * n;
      std::printf("threads %d  gemm 1024^3 float: %6.1f GFLOP/s wall (%6.1f per CPU-second)\n", th, fl / t.wall * 1e-9,
                  fl / t.cpu * 1e-9);
    }
    struct Shp {
      index_t N, C, H;
    };
    for (Shp s : {Shp{32, 64, 14}, Shp{32, 32, 28}, Shp{32, 64, 7}, Shp{32, 128, 32}}) {
      const Conv2dParams p = Conv2dParams::symmetric(1, 1);
      auto x = rnd<T>({s.N, s.C, s.H, s.H}, rng), w = rnd<T>({s.C, s.C, 3, 3}, rng), b = rnd<T>({s.C}, rng);
      Tensor<T> y(x.shape()), dy = rnd<T>(x.shape(), rng), dx(x.shape()), dw(w.shape()), db(b.shape());
      const double fl = 2.0 * s.N * s.C * s.C * 9 * s.H * s.H;
      const int reps = s.C >= 128 ? 3 : 15;
      const auto f = time_it([&] { E::run(ops::conv2d_forward, x, w, b, p, y); }, reps);
      const auto bw = time_it([&] { E::run(ops::conv2d_backward, x, w, dy, p, dx, dw, db); }, reps);
      std::printf(
          "threads %d  conv3x3 N=%td C=%td %tdx%td: forward %6.1f GFLOP/s wall (%6.1f per CPU-s, %.2f ms), "
          "backward %6.1f GFLOP/s wall (%6.1f per CPU-s, %.2f ms)\n",
          th, s.N, s.C, s.H, s.H, fl / f.wall * 1e-9, fl / f.cpu * 1e-9, f.wall * 1e3, 2 * fl / bw.wall * 1e-9,
          2 * fl / bw.cpu * 1e-9, bw.wall * 1e3);
    }
  }
}
