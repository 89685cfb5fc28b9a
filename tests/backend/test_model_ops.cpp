// The ops that carry nn/'s and train/'s own steps (backend/ops.hpp: scale-
// shift, embeddings, the timestep embedding, copies, attention's float32
// softmax, q_sample, the loss, the gradient norm, Adam and EMA):
//   - Reference against closed forms and hand-written loops,
//   - gradients against central finite differences in double,
//   - backend::Cpu against Reference, bit for bit (these ops use Reference's
//     element formulas and orders), at 1, 2 and 3 threads.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/flop_counter.hpp"
#include "ddpm/backend/profiled.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/core/random.hpp"

using namespace ddpm;
using E = backend::Cpu;
using R = backend::Reference;

namespace {

template <class T>
Tensor<T> rnd(Shape s, Rng& rng, double scale = 1.0) {
  Tensor<T> t(s);
  for (auto& v : t) v = static_cast<T>(scale * rng.normal());
  return t;
}

template <class T>
bool identical(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::equal(a.begin(), a.end(), b.begin());
}

struct ThreadGuard {
  int saved = E::num_threads();
  ~ThreadGuard() { E::set_num_threads(saved); }
};

// d loss / d x[i] by the fourth-order central difference, for every i.
Tensor<double> numeric_grad(Tensor<double>& x, const std::function<double()>& loss, double h = 1e-4) {
  Tensor<double> g(x.shape());
  for (index_t i = 0; i < x.numel(); ++i) {
    const double x0 = x[i];
    auto at = [&](double d) {
      x[i] = x0 + d;
      return loss();
    };
    g[i] = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h);
    x[i] = x0;
  }
  return g;
}

double max_rel_err(const Tensor<double>& a, const Tensor<double>& b) {
  double worst = 0;
  for (index_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]) / std::max({std::abs(a[i]), std::abs(b[i]), 1e-3}));
  return worst;
}

double dot(const Tensor<double>& a, const Tensor<double>& b) {
  double s = 0;
  for (index_t i = 0; i < a.numel(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

TEST_CASE("model ops: reference closed forms", "[backend]") {
  // affine: the U-Net's centring 2x - 1.
  Tensor<float> x({4}, std::vector<float>{0.0f, 0.25f, 0.5f, 1.0f}), y({4});
  R::run(ops::affine, x, 2.0f, -1.0f, y);
  CHECK(std::vector<float>(y.begin(), y.end()) == std::vector<float>{-1.0f, -0.5f, 0.0f, 1.0f});
  R::run(ops::fill, 7.0f, y);
  CHECK(y[3] == 7.0f);

  // copy_columns: [x | t | c] and back.
  Tensor<double> a({2, 2}, std::vector<double>{1, 2, 3, 4}), b({2, 1}, std::vector<double>{5, 6}), cat({2, 3});
  R::run(ops::copy_columns, a, 0, cat, 0, 2);
  R::run(ops::copy_columns, b, 0, cat, 2, 1);
  CHECK(std::vector<double>(cat.begin(), cat.end()) == std::vector<double>{1, 2, 5, 3, 4, 6});
  Tensor<double> back({2, 1});
  R::run(ops::copy_columns, cat, 1, back, 0, 1);
  CHECK(back[0] == 2);
  CHECK(back[1] == 4);

  // scale_shift: x (1 + scale) + shift per (n, c).
  Tensor<double> xs({1, 2, 1, 2}, std::vector<double>{1, 2, 3, 4}), e({1, 4}, std::vector<double>{1, -0.5, 10, 20});
  Tensor<double> ys(xs.shape());
  R::run(ops::scale_shift_forward, xs, e, ys);
  CHECK(std::vector<double>(ys.begin(), ys.end()) == std::vector<double>{12, 14, 21.5, 22});

  // embedding rows, and the gradient of a repeated label summed.
  Tensor<float> table({3, 2}, std::vector<float>{0, 1, 10, 11, 20, 21}), rows({3, 2});
  const std::vector<std::int64_t> labels{2, 0, 2};
  R::run(ops::embedding_forward, table, labels, rows);
  CHECK(std::vector<float>(rows.begin(), rows.end()) == std::vector<float>{20, 21, 0, 1, 20, 21});
  Tensor<float> dtable({3, 2}, 1.0f), dy({3, 2}, std::vector<float>{1, 2, 3, 4, 5, 6});
  R::run(ops::embedding_backward, labels, dy, dtable);
  CHECK(std::vector<float>(dtable.begin(), dtable.end()) == std::vector<float>{4, 5, 1, 1, 7, 9});

  // timestep embedding: t = 0 gives cos = 1, sin = 0; odd dims are zero-padded.
  Tensor<double> te({2, 5});
  const std::vector<double> t{0.0, 3.0};
  backend::TimestepEmbeddingParams tp;
  tp.float32 = false;
  R::run(ops::timestep_embedding, std::span<const double>(t), tp, te);
  CHECK(te.at(0, 0) == 1.0);
  CHECK(te.at(0, 2) == 0.0);
  CHECK(te.at(1, 0) == Approx(std::cos(3.0)).epsilon(1e-15));  // freq_0 = 1
  CHECK(te.at(1, 3) == Approx(std::sin(3.0 * std::exp(-std::log(10000.0) / 2))).epsilon(1e-14));
  CHECK(te.at(1, 4) == 0.0);

  // batch_axpby: per-sample coefficients.
  Tensor<double> p({2, 2}, std::vector<double>{1, 2, 3, 4}), q({2, 2}, std::vector<double>{1, 1, 1, 1}), r({2, 2});
  const std::vector<double> ca{2, 3}, cb{-1, 0.5};
  R::run(ops::batch_axpby, std::span<const double>(ca), p, std::span<const double>(cb), q, r);
  CHECK(std::vector<double>(r.begin(), r.end()) == std::vector<double>{1, 3, 9.5, 12.5});

  // mse_loss: weights 1 and 3, per = 2: L = (1 * 2.5 + 3 * 0) / 2.
  Tensor<double> pred({2, 2}, std::vector<double>{1, 2, 0, 0}), target({2, 2}, std::vector<double>{0, 0, 0, 0});
  Tensor<double> dpred({2, 2});
  const std::vector<double> w{1, 3};
  CHECK(R::run(ops::mse_loss, pred, target, std::span<const double>(w), dpred) == 1.25);
  CHECK(dpred[1] == 2.0 * 1 / 4 * 2);
  CHECK(R::run(ops::mse_loss, pred, target, {}, dpred) == 1.25);

  // sum of squares in double, finiteness.
  Tensor<float> s({3}, std::vector<float>{1, -2, 3});
  CHECK(R::run(ops::sum_squares, s) == 14.0);
  CHECK(R::run(ops::all_finite, s));
  s[1] = std::numeric_limits<float>::infinity();
  CHECK_FALSE(R::run(ops::all_finite, s));
  s[1] = std::numeric_limits<float>::quiet_NaN();
  CHECK_FALSE(R::run(ops::all_finite, s));

  // EMA: shadow += (1 - d)(p - shadow).
  Tensor<double> pe({1}, std::vector<double>{10}), shadow({1}, std::vector<double>{0});
  R::run(ops::ema_update, pe, 0.75, shadow);
  CHECK(shadow[0] == 2.5);
}

TEST_CASE("model ops: adam_update is torch's Adam and AdamW step", "[backend]") {
  // First step with bias correction: m = (1-b1) g, v = (1-b2) g^2, m_hat / sqrt(v_hat) = sign(g).
  Tensor<double> p({2}, std::vector<double>{1.0, -1.0}), g({2}, std::vector<double>{0.5, -2.0}), m({2}), v({2});
  backend::AdamParams s;
  s.lr = 0.1;
  s.eps = 0;
  R::run(ops::adam_update, p, g, m, v, s);
  CHECK(p[0] == Approx(0.9).epsilon(1e-14));
  CHECK(p[1] == Approx(-0.9).epsilon(1e-14));
  CHECK(m[0] == Approx(0.05).epsilon(1e-14));
  CHECK(v[1] == Approx(0.004).epsilon(1e-14));
  // AdamW decays the weight first: p (1 - lr wd) - lr sign(g).
  Tensor<double> p2({1}, std::vector<double>{2.0}), g2({1}, std::vector<double>{1.0}), m2({1}), v2({1});
  s.weight_decay = 0.5;
  s.decoupled_weight_decay = true;
  R::run(ops::adam_update, p2, g2, m2, v2, s);
  CHECK(p2[0] == Approx(2.0 * 0.95 - 0.1).epsilon(1e-14));
}

TEST_CASE("model ops: float32-softmax attention", "[backend]") {
  Rng rng(5);
  const index_t N = 2, L = 5, C = 4;
  const auto q = rnd<double>({N, L, C}, rng), k = rnd<double>({N, L, C}, rng), v = rnd<double>({N, L, C}, rng);
  Tensor<double> out({N, L, C}), probs({N, 2, L, L}), out_exact(out.shape()), probs_exact(probs.shape());
  R::run(ops::attention_forward_float32_softmax, q, k, v, 2, 0.5, out, probs);
  R::run(ops::attention_forward, q, k, v, 2, 0.5, out_exact, probs_exact);
  double err = 0, float_dev = 0;
  for (index_t i = 0; i < probs.numel(); ++i) {
    err = std::max(err, std::abs(probs[i] - probs_exact[i]));
    float_dev = std::max(float_dev, std::abs(probs[i] - static_cast<double>(static_cast<float>(probs[i]))));
  }
  CHECK(err < 1e-6);      // float32 rounding of the softmax
  CHECK(err > 0);         // ... which is really float32
  CHECK(float_dev == 0);  // the probabilities are float32 values
  // For float it is attention_forward.
  const auto qf = q.cast<float>(), kf = k.cast<float>(), vf = v.cast<float>();
  Tensor<float> of(out.shape()), pf(probs.shape()), of2(out.shape()), pf2(probs.shape());
  R::run(ops::attention_forward_float32_softmax, qf, kf, vf, 2, 0.5f, of, pf);
  R::run(ops::attention_forward, qf, kf, vf, 2, 0.5f, of2, pf2);
  double errf = 0;
  for (index_t i = 0; i < of.numel(); ++i) errf = std::max(errf, std::abs(static_cast<double>(of[i] - of2[i])));
  CHECK(errf < 1e-6);
}

TEST_CASE("model ops: gradients match central finite differences", "[backend]") {
  Rng rng(11);
  SECTION("scale_shift") {
    auto x = rnd<double>({2, 3, 2, 2}, rng), e = rnd<double>({2, 6}, rng);
    const auto w = rnd<double>(x.shape(), rng);
    Tensor<double> y(x.shape());
    auto loss = [&] {
      R::run(ops::scale_shift_forward, x, e, y);
      return dot(w, y);
    };
    Tensor<double> dx(x.shape()), de(e.shape());
    R::run(ops::scale_shift_backward, x, e, w, dx, de);
    CHECK(max_rel_err(dx, numeric_grad(x, loss)) < 1e-8);
    CHECK(max_rel_err(de, numeric_grad(e, loss)) < 1e-8);
  }
  SECTION("embedding") {
    auto table = rnd<double>({4, 3}, rng);
    const std::vector<std::int64_t> labels{3, 1, 3};
    const auto w = rnd<double>({3, 3}, rng);
    Tensor<double> y({3, 3});
    auto loss = [&] {
      R::run(ops::embedding_forward, table, labels, y);
      return dot(w, y);
    };
    Tensor<double> dtable(table.shape());
    R::run(ops::embedding_backward, labels, w, dtable);
    CHECK(max_rel_err(dtable, numeric_grad(table, loss)) < 1e-8);
  }
  SECTION("mse_loss with weights") {
    auto pred = rnd<double>({3, 4}, rng);
    const auto target = rnd<double>({3, 4}, rng);
    const std::vector<double> w{0.5, 2.0, 1.0};
    Tensor<double> d(pred.shape());
    auto loss = [&] { return R::run(ops::mse_loss, pred, target, std::span<const double>(w), d); };
    loss();
    const Tensor<double> analytic = d;
    CHECK(max_rel_err(analytic, numeric_grad(pred, loss)) < 1e-8);
  }
  SECTION("affine") {
    auto x = rnd<double>({5}, rng);
    const auto w = rnd<double>({5}, rng);
    Tensor<double> y({5});
    auto loss = [&] {
      R::run(ops::affine, x, 2.0, -1.0, y);
      return dot(w, y);
    };
    Tensor<double> dx({5});
    R::run(ops::affine, w, 2.0, 0.0, dx);  // the centring's backward: 2 dy
    CHECK(max_rel_err(dx, numeric_grad(x, loss)) < 1e-8);
  }
}

TEMPLATE_TEST_CASE("model ops: eigen matches reference bit for bit", "[backend]", float, double) {
  using T = TestType;
  ThreadGuard guard;
  Rng rng(3);
  // Large enough to be split over threads.
  const index_t N = 4, C = 32, H = 40, W = 40;
  const auto x = rnd<T>({N, C, H, W}, rng), z = rnd<T>({N, C, H, W}, rng), e = rnd<T>({N, 2 * C}, rng);
  const auto table = rnd<T>({10, 300}, rng);
  std::vector<std::int64_t> labels;
  for (int i = 0; i < 700; ++i) labels.push_back(i * 7 % 10);
  const auto dyl = rnd<T>({700, 300}, rng);
  const std::vector<T> ca{T(0.9), T(0.5), T(0.1), T(0.99)}, cb{T(0.2), T(-0.7), T(0.3), T(0.05)};
  const std::vector<double> lw{1.0, 0.5, 2.0, 0.25};
  const std::vector<double> t{0, 17, 999, 0.5};
  const index_t L = 64, LC = 32;
  const auto q = rnd<T>({2, L, LC}, rng), k = rnd<T>({2, L, LC}, rng), v = rnd<T>({2, L, LC}, rng);

  struct Out {
    Tensor<T> aff, cpy, cols, ssf, ssdx, ssde, emb, dtab, temb, axpby, dpred, adam_p, adam_m, adam_v, ema, att, probs;
    double loss = 0, sumsq = 0;
    bool finite = false, nonfinite = true;
  };
  auto run_all = [&]<class B>(B) {
    Out o;
    o.aff = Tensor<T>(x.shape());
    B::run(ops::affine, x, T(2), T(-1), o.aff);
    o.cpy = Tensor<T>(x.shape());
    B::run(ops::copy, x, o.cpy);
    o.cols = Tensor<T>({N * C, 2 * H * W});
    B::run(ops::copy_columns, x.view().reshape({N * C, H * W}), 0, o.cols, H * W, H * W);
    B::run(ops::copy_columns, z.view().reshape({N * C, H * W}), 7, o.cols, 0, H * W - 7);
    o.ssf = Tensor<T>(x.shape());
    B::run(ops::scale_shift_forward, x, e, o.ssf);
    o.ssdx = Tensor<T>(x.shape());
    o.ssde = Tensor<T>(e.shape());
    B::run(ops::scale_shift_backward, x, e, z, o.ssdx, o.ssde);
    o.emb = Tensor<T>({700, 300});
    B::run(ops::embedding_forward, table, labels, o.emb);
    o.dtab = Tensor<T>(table.shape(), T(1));
    B::run(ops::embedding_backward, labels, dyl, o.dtab);
    o.temb = Tensor<T>({4, 33});
    B::run(ops::timestep_embedding, std::span<const double>(t), backend::TimestepEmbeddingParams{}, o.temb);
    o.axpby = Tensor<T>(x.shape());
    B::run(ops::batch_axpby, std::span<const T>(ca), x, std::span<const T>(cb), z, o.axpby);
    o.dpred = Tensor<T>(x.shape());
    o.loss = B::run(ops::mse_loss, x, z, std::span<const double>(lw), o.dpred);
    o.sumsq = B::run(ops::sum_squares, x);
    o.finite = B::run(ops::all_finite, x);
    Tensor<T> bad = Tensor<T>::copy_of(x);
    bad[bad.numel() - 3] = std::numeric_limits<T>::quiet_NaN();
    o.nonfinite = B::run(ops::all_finite, bad);
    o.adam_p = Tensor<T>::copy_of(x);
    o.adam_m = Tensor<T>(x.shape());
    o.adam_v = Tensor<T>(x.shape());
    backend::AdamParams s;
    s.lr = 1e-3;
    s.weight_decay = 0.01;
    for (int step = 1; step <= 3; ++step) {
      s.step = step;
      s.decoupled_weight_decay = step == 2;
      B::run(ops::adam_update, o.adam_p, z, o.adam_m, o.adam_v, s);
    }
    o.ema = Tensor<T>::copy_of(z);
    B::run(ops::ema_update, x, T(0.999), o.ema);
    o.att = Tensor<T>(q.shape());
    o.probs = Tensor<T>({2, 4, L, L});
    B::run(ops::attention_forward_float32_softmax, q, k, v, 4, T(0.25), o.att, o.probs);
    return o;
  };
  const Out ref = run_all(R{});
  CHECK(ref.finite);
  CHECK_FALSE(ref.nonfinite);
  for (int threads : {1, 2, 3}) {
    INFO("threads " << threads);
    E::set_num_threads(threads);
    const Out got = run_all(E{});
    CHECK(identical(got.aff, ref.aff));
    CHECK(identical(got.cpy, ref.cpy));
    CHECK(identical(got.cols, ref.cols));
    CHECK(identical(got.ssf, ref.ssf));
    CHECK(identical(got.ssdx, ref.ssdx));
    CHECK(identical(got.ssde, ref.ssde));
    CHECK(identical(got.emb, ref.emb));
    CHECK(identical(got.dtab, ref.dtab));
    CHECK(identical(got.temb, ref.temb));
    CHECK(identical(got.axpby, ref.axpby));
    CHECK(identical(got.dpred, ref.dpred));
    CHECK(got.loss == ref.loss);
    CHECK(got.sumsq == ref.sumsq);
    CHECK(got.finite == ref.finite);
    CHECK(got.nonfinite == ref.nonfinite);
    CHECK(identical(got.adam_p, ref.adam_p));
    CHECK(identical(got.adam_m, ref.adam_m));
    CHECK(identical(got.adam_v, ref.adam_v));
    CHECK(identical(got.ema, ref.ema));
    // Attention's GEMMs are Eigen's: equal within rounding, not bit for bit.
    double err = 0;
    for (index_t i = 0; i < ref.att.numel(); ++i)
      err = std::max(err, std::abs(static_cast<double>(got.att[i]) - static_cast<double>(ref.att[i])));
    CHECK(err < (std::is_same_v<T, float> ? 1e-5 : 1e-6));
  }
}

TEST_CASE("model ops: profiled and flop-counter pass results through", "[backend]") {
  Tensor<double> x({3}, std::vector<double>{1, 2, 2});
  using P = backend::Profiled<R>;
  P::reset();
  CHECK(P::run(ops::sum_squares, x) == 9.0);
  CHECK(P::run(ops::all_finite, x));
  const auto rep = P::report();
  REQUIRE(rep.size() == 2);
  backend::FlopCounter::reset();
  CHECK(backend::FlopCounter::run(ops::sum_squares, x) == 0.0);
  CHECK(backend::FlopCounter::flops() == 0.0);
}
