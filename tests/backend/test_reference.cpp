// backend::Reference against tiny cases worked out by hand.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "ddpm/backend/reference.hpp"

using ddpm::ConstTensorView;
using ddpm::Shape;
using ddpm::Tensor;
using ddpm::TensorView;
namespace ops = ddpm::ops;
using R = ddpm::backend::Reference;
using ddpm::backend::Conv2dParams;
using ddpm::backend::Trans;

namespace {
Tensor<double> t(Shape s, std::vector<double> v) { return Tensor<double>(s, std::span<const double>(v)); }
void check(const Tensor<double>& got, std::vector<double> want, double tol = 1e-12) {
  REQUIRE(static_cast<std::size_t>(got.numel()) == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    CHECK(got[static_cast<ddpm::index_t>(i)] == Approx(want[i]).margin(tol));
  }
}
const ConstTensorView<double> none{};
const TensorView<double> skip{};
}  // namespace

TEST_CASE("reference: identity", "[backend]") {
  STATIC_REQUIRE(ddpm::backend::Backend<R>);
  CHECK(R::name() == "reference");
  R::set_num_threads(8);
  CHECK(R::num_threads() == 1);
}

TEST_CASE("reference: gemm with transposes, alpha and beta", "[backend]") {
  // A = [[1,2,3],[4,5,6]] (2x3), B = [[1,0],[0,1],[1,1]] (3x2): A B = [[4,5],[10,11]].
  std::vector<double> A{1, 2, 3, 4, 5, 6}, B{1, 0, 0, 1, 1, 1}, C{1, 1, 1, 1};
  R::run(ops::gemm, Trans::No, Trans::No, 2, 2, 3, 2.0, A.data(), 3, B.data(), 2, 1.0, C.data(), 2);
  CHECK(C == std::vector<double>{9, 11, 21, 23});
  // A^T A (3x3) with A stored 2x3: [[17,22,27],[22,29,36],[27,36,45]]; beta = 0 ignores NaN in C.
  std::vector<double> D(9, std::nan(""));
  R::run(ops::gemm, Trans::Yes, Trans::No, 3, 3, 2, 1.0, A.data(), 3, A.data(), 3, 0.0, D.data(), 3);
  CHECK(D == std::vector<double>{17, 22, 27, 22, 29, 36, 27, 36, 45});
  // A A^T (2x2) = [[14,32],[32,77]].
  std::vector<double> E(4);
  R::run(ops::gemm, Trans::No, Trans::Yes, 2, 2, 3, 1.0, A.data(), 3, A.data(), 3, 0.0, E.data(), 2);
  CHECK(E == std::vector<double>{14, 32, 32, 77});
  // Leading dims larger than the logical width: the 2x2 top-left block of A (lda 3) times I.
  std::vector<double> I{1, 0, 0, 1}, F(4);
  R::run(ops::gemm, Trans::No, Trans::No, 2, 2, 2, 1.0, A.data(), 3, I.data(), 2, 0.0, F.data(), 2);
  CHECK(F == std::vector<double>{1, 2, 4, 5});
}

TEST_CASE("reference: linear forward and backward", "[backend]") {
  auto x = t({2, 3}, {1, 2, 3, -1, 0, 2});
  auto w = t({2, 3}, {1, 0, -1, 2, 1, 0});
  auto b = t({2}, {0.5, -1});
  Tensor<double> y({2, 2});
  R::run(ops::linear_forward, x, w, b, y);
  check(y, {1 - 3 + 0.5, 2 + 2 - 1, -1 - 2 + 0.5, -2 + 0 - 1});
  R::run(ops::linear_forward, x, w, none, y);
  check(y, {-2, 4, -3, -2});

  auto dy = t({2, 2}, {1, 2, 3, 4});
  Tensor<double> dx({2, 3}), dw({2, 3}, 1.0), db({2}, 10.0);
  R::run(ops::linear_backward, x, w, dy, dx, dw, db);
  // dx = dy w = [[1+4, 2, -1], [3+8, 4, -3]]
  check(dx, {5, 2, -1, 11, 4, -3});
  // dw = 1 + dy^T x = 1 + [[1-3, 2, 3+6], [2-4, 4, 6+8]]
  check(dw, {-1, 3, 10, -1, 5, 15});
  check(db, {14, 16});
  // Absent outputs are skipped.
  R::run(ops::linear_backward, x, w, dy, skip, skip, db);
  check(db, {18, 22});
}

TEST_CASE("reference: conv2d forward by hand", "[backend]") {
  // 1x1x3x3 image 1..9, kernel 2x2 [[1,0],[0,-1]] (x[i,j] - x[i+1,j+1]) = -4 everywhere.
  auto x = t({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  auto w = t({1, 1, 2, 2}, {1, 0, 0, -1});
  auto b = t({1}, {0.25});
  Tensor<double> y({1, 1, 2, 2});
  R::run(ops::conv2d_forward, x, w, b, Conv2dParams::symmetric(1, 0), y);
  check(y, {-3.75, -3.75, -3.75, -3.75});

  // Padding 1, stride 2: out 2x2; taps outside read 0.
  Tensor<double> y2({1, 1, 2, 2});
  R::run(ops::conv2d_forward, x, w, none, Conv2dParams::symmetric(2, 1), y2);
  // out[oy,ox] = x[2oy-1, 2ox-1] - x[2oy, 2ox] (zero when outside).
  check(y2, {-1, -3, -7, 5 - 9});

  // Asymmetric padding (bottom/right only), stride 2, 3x3 kernel of ones: sums of 3x3 windows.
  auto ones = t({1, 1, 3, 3}, std::vector<double>(9, 1.0));
  Conv2dParams p{2, 0, 1, 0, 1};
  REQUIRE(p.out_h(3, 3) == 1);
  Tensor<double> y3({1, 1, 1, 1});
  R::run(ops::conv2d_forward, x, ones, none, p, y3);
  check(y3, {45});
  auto x4 = t({1, 1, 4, 4}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16});
  Tensor<double> y4({1, 1, 2, 2});
  R::run(ops::conv2d_forward, x4, ones, none, p, y4);
  // windows rows 0-2 / 2-4(pad), cols 0-2 / 2-4(pad)
  check(y4, {1 + 2 + 3 + 5 + 6 + 7 + 9 + 10 + 11, 3 + 4 + 7 + 8 + 11 + 12, 9 + 10 + 11 + 13 + 14 + 15,
             11 + 12 + 15 + 16});
}

TEST_CASE("reference: conv2d multi-channel and backward by hand", "[backend]") {
  // 1x1 convolution with 2 in / 2 out channels is a per-pixel matrix product.
  auto x = t({1, 2, 1, 2}, {1, 2, 3, 4});  // channel 0: [1,2], channel 1: [3,4]
  auto w = t({2, 2, 1, 1}, {1, 1, 2, -1});
  auto b = t({2}, {0, 1});
  Tensor<double> y({1, 2, 1, 2});
  R::run(ops::conv2d_forward, x, w, b, Conv2dParams{}, y);
  check(y, {4, 6, 2 - 3 + 1, 4 - 4 + 1});
  auto dy = t({1, 2, 1, 2}, {1, 0, 0, 1});
  Tensor<double> dx({1, 2, 1, 2}), dw({2, 2, 1, 1}), db({2});
  R::run(ops::conv2d_backward, x, w, dy, Conv2dParams{}, dx, dw, db);
  // dx[ci,p] = sum_co w[co,ci] dy[co,p]
  check(dx, {1, 2, 1, -1});
  // dw[co,ci] = sum_p dy[co,p] x[ci,p]
  check(dw, {1, 3, 2, 4});
  check(db, {1, 1});
}

TEST_CASE("reference: group norm by hand", "[backend]") {
  // One group of [1, 2, 3, 4]: mean 2.5, var 1.25.
  auto x = t({1, 2, 2}, {1, 2, 3, 4});
  auto gamma = t({2}, {2, 1});
  auto beta = t({2}, {0, 1});
  Tensor<double> y({1, 2, 2}), mean({1}), rstd({1});
  R::run(ops::group_norm_forward, x, 1, 0.0, gamma, beta, y, mean, rstd);
  const double r = 1 / std::sqrt(1.25);
  check(mean, {2.5});
  check(rstd, {r});
  check(y, {-1.5 * r * 2, -0.5 * r * 2, 0.5 * r + 1, 1.5 * r + 1});
  // Two groups, no affine: each channel of 2 values normalises to [-1, 1] (eps 0).
  Tensor<double> m2({2}), r2({2});
  R::run(ops::group_norm_forward, x, 2, 0.0, none, none, y, m2, r2);
  check(y, {-1, 1, -1, 1});
  check(m2, {1.5, 3.5});
  // Backward: dy = 1 everywhere gives dx = 0 (shift invariance), dbeta = count.
  auto dy = t({1, 2, 2}, {1, 1, 1, 1});
  Tensor<double> dx({1, 2, 2}), dg({2}), db({2});
  R::run(ops::group_norm_backward, x, 2, none, m2, r2, dy, dx, dg, db);
  check(dx, {0, 0, 0, 0});
  check(db, {2, 2});
  check(dg, {0, 0});
  // dy = xhat gives dgamma = count and dx = 0 (scale invariance with eps 0).
  auto dy2 = t({1, 2, 2}, {-1, 1, -1, 1});
  R::run(ops::group_norm_backward, x, 2, none, m2, r2, dy2, dx, dg, db);
  check(dx, {0, 0, 0, 0});
  check(dg, {2, 2});
}

TEST_CASE("reference: silu by hand", "[backend]") {
  auto x = t({3}, {0, 1, -2});
  Tensor<double> y({3}), dx({3});
  R::run(ops::silu_forward, x, y);
  const double s1 = 1 / (1 + std::exp(-1.0)), s2 = 1 / (1 + std::exp(2.0));
  check(y, {0, s1, -2 * s2});
  auto dy = t({3}, {1, 1, 2});
  R::run(ops::silu_backward, x, dy, dx);
  check(dx, {0.5, s1 * (1 + (1 - s1)), 2 * s2 * (1 - 2 * (1 - s2))});
}

TEST_CASE("reference: nearest upsampling by hand", "[backend]") {
  auto x = t({1, 1, 1, 2}, {1, 2});
  Tensor<double> y({1, 1, 2, 4});
  R::run(ops::upsample_nearest2x_forward, x, y);
  check(y, {1, 1, 2, 2, 1, 1, 2, 2});
  auto dy = t({1, 1, 2, 4}, {1, 2, 3, 4, 5, 6, 7, 8});
  Tensor<double> dx({1, 1, 1, 2});
  R::run(ops::upsample_nearest2x_backward, dy, dx);
  check(dx, {1 + 2 + 5 + 6, 3 + 4 + 7 + 8});
}

TEST_CASE("reference: attention by hand", "[backend]") {
  // One head, L = 2, C = 1: q = [ln 3, 0], k = [1, 0], scale 1.
  // Row 0 scores [ln 3, 0] -> P = [3/4, 1/4]; row 1 scores [0, 0] -> [1/2, 1/2].
  const double l3 = std::log(3.0);
  auto q = t({1, 2, 1}, {l3, 0});
  auto k = t({1, 2, 1}, {1, 0});
  auto v = t({1, 2, 1}, {4, 8});
  Tensor<double> out({1, 2, 1}), probs({1, 1, 2, 2});
  R::run(ops::attention_forward, q, k, v, 1, 1.0, out, probs);
  check(probs, {0.75, 0.25, 0.5, 0.5});
  check(out, {5, 6});
  // Numerically stable: huge scores do not overflow.
  auto qb = t({1, 2, 1}, {1000, 1000});
  auto kb = t({1, 2, 1}, {1, 0});
  R::run(ops::attention_forward, qb, kb, v, 1, 1.0, out, probs);
  check(probs, {1, 0, 1, 0});
  check(out, {4, 4});

  // Backward: dv = P^T dout; with dout = [1, 0]: dv = [3/4, 1/4].
  R::run(ops::attention_forward, q, k, v, 1, 1.0, out, probs);
  auto dout = t({1, 2, 1}, {1, 0});
  Tensor<double> dq({1, 2, 1}), dk({1, 2, 1}), dv({1, 2, 1});
  R::run(ops::attention_backward, q, k, v, probs, 1, 1.0, dout, dq, dk, dv);
  check(dv, {0.75, 0.25});
  // Row 0: dP = [4, 8], P.dP = 5, dS = P*(dP-5) = [-3/4, 3/4]; dq0 = dS.k = -3/4;
  // dk = dS^T q0 = [-3/4 ln3, 3/4 ln3].
  check(dq, {-0.75, 0});
  check(dk, {-0.75 * l3, 0.75 * l3});

  // Two heads are independent: head 1 uses channel 1 only.
  auto q2 = t({1, 2, 2}, {l3, 0, 0, 0});
  auto k2 = t({1, 2, 2}, {1, 5, 0, 7});
  auto v2 = t({1, 2, 2}, {4, 1, 8, 3});
  Tensor<double> out2({1, 2, 2}), probs2({1, 2, 2, 2});
  R::run(ops::attention_forward, q2, k2, v2, 2, 1.0, out2, probs2);
  check(probs2, {0.75, 0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5});
  check(out2, {5, 2, 6, 2});
}

TEST_CASE("reference: glue ops by hand", "[backend]") {
  // a = [[1, 2, 3], [4, 5, 6]] as [N=1, C=2, 3]; b = all 1.
  auto a = t({1, 2, 3}, {1, 2, 3, 4, 5, 6});
  auto b = t({1, 2, 3}, {1, 1, 1, 1, 1, 1});
  Tensor<double> y({1, 2, 3});
  R::run(ops::add, a, b, 0.5, y);
  check(y, {1, 1.5, 2, 2.5, 3, 3.5});
  R::run(ops::add, a, none, 2.0, y);  // b absent: y = alpha * a
  check(y, {2, 4, 6, 8, 10, 12});
  R::run(ops::add, y, a, 1.0, y);  // in place
  check(y, {3, 6, 9, 12, 15, 18});

  auto e = t({1, 2}, {10, -1});
  R::run(ops::add_channel_bias, a, e, y);
  check(y, {11, 12, 13, 3, 4, 5});

  Tensor<double> s({1, 2});
  R::run(ops::channel_sum, a, s);
  check(s, {6, 15});

  Tensor<double> tr({1, 3, 2});
  R::run(ops::transpose, a, 1, 2, 3, tr);
  check(tr, {1, 4, 2, 5, 3, 6});

  // Two images: p [2, 1, 2] and q [2, 2, 2] -> [2, 3, 2], image by image.
  auto p = t({2, 1, 2}, {1, 2, 3, 4});
  auto q = t({2, 2, 2}, {5, 6, 7, 8, 9, 10, 11, 12});
  Tensor<double> cat({2, 3, 2});
  R::run(ops::concat_channels, p, q, cat);
  check(cat, {1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12});
  Tensor<double> p2({2, 1, 2}), q2({2, 2, 2});
  R::run(ops::split_channels, cat, p2, q2);
  check(p2, {1, 2, 3, 4});
  check(q2, {5, 6, 7, 8, 9, 10, 11, 12});
}
