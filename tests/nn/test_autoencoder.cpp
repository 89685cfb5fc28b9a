// The autoencoder layers (nn/autoencoder_*.hpp, diagonal_gaussian.hpp,
// vector_quantizer.hpp, autoencoder_kl.hpp, vq_model.hpp): names and shapes,
// closed-form values, and every backward against central finite differences
// in double (support/gradcheck.hpp). diffusers' agreement is tests/golden/test_autoencoder.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <set>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/autoencoder_blocks.hpp"
#include "ddpm/nn/autoencoder_coders.hpp"
#include "ddpm/nn/autoencoder_kl.hpp"
#include "ddpm/nn/diagonal_gaussian.hpp"
#include "ddpm/nn/vector_quantizer.hpp"
#include "ddpm/nn/vq_model.hpp"
#include "support/gradcheck.hpp"
#include "support/tiny_autoencoder.hpp"
#if __has_include("ddpm/backend/cpu.hpp")
#include "ddpm/backend/cpu.hpp"
#define DDPM_TEST_HAVE_EIGEN 1
#endif

using namespace ddpm;
using R = backend::Reference;

namespace {

nn::AutoencoderKLConfig tiny_kl() {
  auto c = ddpm::test::tiny_autoencoder<nn::AutoencoderKLConfig>();
  c.latent_channels = 2;
  return c;
}

nn::VQModelConfig tiny_vq() {
  auto c = ddpm::test::tiny_autoencoder<nn::VQModelConfig>();
  c.latent_channels = 3;
  c.vq_embed_dim = 2;
  c.num_vq_embeddings = 5;
  return c;
}

}  // namespace

TEST_CASE("Autoencoder blocks: diffusers' names and shapes", "[nn]") {
  Parameters<double> p;
  nn::AutoencoderKL<double, R> m(tiny_kl());
  const auto& q = m.parameters();
  CHECK(q.info(q.id("encoder.conv_in.weight")).shape == Shape{4, 2, 3, 3});
  CHECK(q.info(q.id("encoder.down_blocks.0.downsamplers.0.conv.weight")).shape == Shape{4, 4, 3, 3});
  CHECK_FALSE(q.contains("encoder.down_blocks.1.downsamplers.0.conv.weight"));
  CHECK(q.info(q.id("encoder.down_blocks.1.resnets.0.conv_shortcut.weight")).shape == Shape{6, 4, 1, 1});
  CHECK(q.info(q.id("encoder.mid_block.attentions.0.to_q.weight")).shape == Shape{6, 6});
  CHECK(q.info(q.id("encoder.mid_block.attentions.0.group_norm.weight")).shape == Shape{6});
  CHECK(q.info(q.id("encoder.conv_out.weight")).shape == Shape{4, 6, 3, 3});  // 2 x latent (double_z)
  CHECK(q.info(q.id("quant_conv.weight")).shape == Shape{4, 4, 1, 1});
  CHECK(q.info(q.id("post_quant_conv.weight")).shape == Shape{2, 2, 1, 1});
  CHECK(q.info(q.id("decoder.conv_in.weight")).shape == Shape{6, 2, 3, 3});
  CHECK(q.contains("decoder.up_blocks.0.resnets.1.conv1.weight"));  // layers_per_block + 1
  CHECK(q.info(q.id("decoder.up_blocks.0.upsamplers.0.conv.weight")).shape == Shape{6, 6, 3, 3});
  CHECK(q.info(q.id("decoder.up_blocks.1.resnets.0.conv_shortcut.weight")).shape == Shape{4, 6, 1, 1});
  CHECK(q.info(q.id("decoder.conv_out.weight")).shape == Shape{2, 4, 3, 3});
  auto c = tiny_kl();
  c.use_quant_conv = c.use_post_quant_conv = c.mid_block_add_attention = false;
  nn::AutoencoderKL<double, R> n(c);
  CHECK_FALSE(n.parameters().contains("quant_conv.weight"));
  CHECK_FALSE(n.parameters().contains("post_quant_conv.bias"));
  CHECK_FALSE(n.parameters().contains("decoder.mid_block.attentions.0.to_q.weight"));
  nn::VQModel<double, R> v(tiny_vq());
  CHECK(v.parameters().info(v.parameters().id("quantize.embedding.weight")).shape == Shape{5, 2});
  CHECK(v.parameters().info(v.parameters().id("quant_conv.weight")).shape == Shape{2, 3, 1, 1});
  CHECK(v.parameters().info(v.parameters().id("post_quant_conv.weight")).shape == Shape{3, 2, 1, 1});
}

TEST_CASE("Autoencoder: shapes through encode and decode", "[nn]") {
  nn::AutoencoderKL<double, R> m(tiny_kl());
  Rng rng(3);
  m.init(rng);
  m.set_mode(nn::Mode::Inference);
  Tensor<double> x({2, 2, 7, 6});
  test::randomize(x.view(), rng);
  auto& post = m.encode(x.view());
  // Zero pad of one row/column at the bottom/right, 3x3 stride 2: 7 -> 3, 6 -> 3.
  CHECK(post.mean().shape() == Shape{2, 2, 3, 3});
  CHECK(m.decode(post.mode()).shape() == Shape{2, 2, 6, 6});
  Tensor<double> bad({1, 3, 2, 2});
  CHECK_THROWS_AS(m.decode(bad.view()), Error);
}

TEST_CASE("DiagonalGaussian: closed form (clamp, sample, KL)", "[nn]") {
  nn::DiagonalGaussian<double, R> g;
  Tensor<double> mom({1, 2, 1, 2}, std::vector<double>{0.5, -1.0, std::log(4.0), -40.0});
  g.forward(mom.view());
  CHECK(g.mean()[0] == 0.5);
  CHECK(g.logvar()[0] == Approx(std::log(4.0)));
  CHECK(g.logvar()[1] == -30.0);  // clamped
  CHECK(g.std()[0] == Approx(2.0));
  Tensor<double> noise({1, 1, 1, 2}, std::vector<double>{1.5, 2.0});
  const auto z = g.sample(noise.view());
  CHECK(z[0] == Approx(0.5 + 2.0 * 1.5));
  CHECK(z[1] == Approx(-1.0 + std::exp(-15.0) * 2.0));
  const auto kl = g.kl();
  CHECK(kl[0] == Approx(0.5 * ((0.25 + 4.0 - 1.0 - std::log(4.0)) + (1.0 + std::exp(-30.0) - 1.0 + 30.0))));
  CHECK(g.mode()[1] == -1.0);
  // Noise from the library's source: same seed, same latent.
  Rng a(7), b(7);
  const Tensor<double> s1 = Tensor<double>::copy_of(g.sample(a));
  const Tensor<double> s2 = Tensor<double>::copy_of(g.sample(b));
  CHECK(std::equal(s1.begin(), s1.end(), s2.begin()));
}

TEST_CASE("DiagonalGaussian: gradients of sample and KL match finite differences", "[nn][gradcheck]") {
  for (const bool sampled : {true, false}) {
    nn::DiagonalGaussian<double, R> g;
    Rng rng(11);
    Tensor<double> mom({2, 4, 2, 3}), noise({2, 2, 2, 3});
    test::randomize(mom.view(), rng);
    test::randomize(noise.view(), rng);
    // Log-variances below -30: the clamp stops their gradient. (Above 20 is
    // checked below: exp(20) in the KL would swamp the finite differences.)
    mom[2 * 6 + 1] = -35.0;
    mom[3 * 6 + 4] = -31.0;
    mom[3 * 6] = 1.0;
    Tensor<double> out({2 * 2 * 2 * 3 + 2});
    ConstTensorView<double> dm;
    const auto fwd = [&]() -> ConstTensorView<double> {
      g.forward(mom.view());
      const auto z = sampled ? g.sample(noise.view()) : g.mode();
      std::copy(z.begin(), z.end(), out.begin());
      const auto kl = g.kl();
      out[z.numel()] = kl[0];
      out[z.numel() + 1] = kl[1];
      return out.view();
    };
    const auto bwd = [&](ConstTensorView<double> dy) {
      const index_t n = dy.numel() - 2;
      dm = g.backward(ConstTensorView<double>(dy.data(), Shape{2, 2, 2, 3}),
                      ConstTensorView<double>(dy.data() + n, Shape{2}));
    };
    test::GradCheckOptions opt;
    opt.max_elements = 100;
    const auto r = test::gradcheck(sampled ? "DiagonalGaussian sample" : "DiagonalGaussian mode", fwd, bwd,
                                   {{"moments", mom.view(), [&] { return dm; }}}, nullptr, opt);
    CHECK(r.worst < 1e-6);
    // Clamped entries: exactly zero gradient.
    mom[3 * 6 + 4] = 23.0;
    g.forward(mom.view());
    if (sampled) g.sample(noise.view());
    Tensor<double> ones({2, 2, 2, 3}, 1.0), k({2}, 1.0);
    const auto d = g.backward(ones.view(), k.view());
    CHECK(d[2 * 6 + 1] == 0.0);
    CHECK(d[3 * 6 + 4] == 0.0);
  }
}

TEST_CASE("VectorQuantizer: nearest code by L2, ties to the lowest index, lookup range", "[nn]") {
  Parameters<double> p;
  nn::VectorQuantizer<double, R> vq(p, "quantize", 4, 2);
  auto E = p.value(p.id("quantize.embedding.weight"));
  // codes: (0,0), (2,0), (0,2), (10,10). A dot-product rule would pick (10,10) for most.
  const double codes[] = {0, 0, 2, 0, 0, 2, 10, 10};
  std::copy(std::begin(codes), std::end(codes), E.begin());
  // positions (NCHW, N=1, C=2, H=1, W=4): (1.1,0), (0.2,1.6), (1,0) tie of codes 0 and 1, (6,6)
  Tensor<double> z({1, 2, 1, 4}, std::vector<double>{1.1, 0.2, 1.0, 6.0, 0.0, 1.6, 0.0, 6.0});
  const auto zq = vq.forward(z.view());
  const std::vector<std::int64_t> want{1, 2, 0, 3};
  CHECK(std::vector<std::int64_t>(vq.indices().begin(), vq.indices().end()) == want);
  CHECK(zq[0] == Approx(2.0));
  CHECK(zq[4] == Approx(0.0));
  CHECK(vq.quantized()[3] == 10.0);
  double sq = 0;
  for (index_t i = 0; i < 8; ++i) sq += (vq.quantized()[i] - z[i]) * (vq.quantized()[i] - z[i]);
  CHECK(vq.commit_loss() == Approx(1.25 * sq / 8));
  const std::vector<std::int64_t> ok{3, 0}, bad{3, 4};
  const auto e = vq.lookup(ok, 1, 1, 2);
  CHECK(e[0] == 10.0);
  CHECK(e[2] == 10.0);
  CHECK_THROWS_WITH(vq.lookup(bad, 1, 1, 2), Catch::Contains("codebook index 4") && Catch::Contains("[0, 4)"));
}

TEST_CASE("VectorQuantizer: straight-through and legacy-beta gradients match finite differences", "[nn][gradcheck]") {
  // diffusers' detach() makes the gradient that of the surrogate
  //   S(z, E) = sum(w z) + mean((sg(e) - z)^2) + beta mean((e - sg(z))^2),
  // so dz is checked with E held fixed, dE with z held fixed.
  Parameters<double> p;
  nn::VectorQuantizer<double, R> vq(p, "quantize", 6, 3);
  Rng rng(5);
  auto E = p.value(p.id("quantize.embedding.weight"));
  rng.fill_normal(E.span(), 0.0, 2.0);
  Tensor<double> z({2, 3, 2, 2}), w(z.shape());
  test::randomize(z.view(), rng);
  test::randomize(w.view(), rng);
  const double dloss = 0.7, beta = 0.25, M = static_cast<double>(z.numel());
  vq.forward(z.view());
  p.zero_grad();
  const Tensor<double> dz = Tensor<double>::copy_of(vq.backward(w.view(), dloss));
  const Tensor<double> e = Tensor<double>::copy_of(vq.quantized());
  const auto idx = std::vector<std::int64_t>(vq.indices().begin(), vq.indices().end());
  const index_t HW = 4;
  const auto surrogate_z = [&](const Tensor<double>& zz) {
    double s = 0, m = 0;
    for (index_t i = 0; i < zz.numel(); ++i) s += w[i] * zz[i], m += (e[i] - zz[i]) * (e[i] - zz[i]);
    return s + dloss * m / M;
  };
  const double h = 1e-5;
  for (index_t i = 0; i < z.numel(); ++i) {
    Tensor<double> a = Tensor<double>::copy_of(z.view()), b = Tensor<double>::copy_of(z.view());
    a[i] += h;
    b[i] -= h;
    CHECK(dz[i] == Approx((surrogate_z(a) - surrogate_z(b)) / (2 * h)).epsilon(1e-7).margin(1e-9));
  }
  const auto surrogate_E = [&](ConstTensorView<double> EE) {
    double m = 0;
    for (index_t n = 0; n < 2; ++n)
      for (index_t s = 0; s < HW; ++s)
        for (index_t c = 0; c < 3; ++c) {
          const double d = EE[idx[static_cast<std::size_t>(n * HW + s)] * 3 + c] - z[(n * 3 + c) * HW + s];
          m += d * d;
        }
    return dloss * beta * m / M;
  };
  const auto dE = p.grad(p.id("quantize.embedding.weight"));
  std::set<std::int64_t> used(idx.begin(), idx.end());
  for (index_t i = 0; i < E.numel(); ++i) {
    const double saved = E[i];
    E[i] = saved + h;
    const double lp = surrogate_E(E);
    E[i] = saved - h;
    const double lm = surrogate_E(E);
    E[i] = saved;
    CHECK(dE[i] == Approx((lp - lm) / (2 * h)).epsilon(1e-7).margin(1e-9));
    if (!used.count(i / 3)) CHECK(dE[i] == 0.0);  // unused codes: zero rows
  }
  CHECK(used.size() > 1);
}

TEST_CASE("Autoencoder blocks: gradients match finite differences", "[nn][gradcheck]") {
  {
    Parameters<double> p;
    nn::AutoencoderMidBlock<double, R> mid(p, "mid_block", 4, 2, true, nn::Numerics::Exact);
    test::gradcheck_layer("AutoencoderMidBlock", mid, p, {2, 4, 3, 2}, 21, 0.5);
  }
  {
    Parameters<double> p;
    nn::DownEncoderBlock2D<double, R> down(p, "down_blocks.0", 2, 4, 2, 2, true);
    test::gradcheck_layer("DownEncoderBlock2D (asymmetric downsample)", down, p, {1, 2, 5, 4}, 22, 0.5);
  }
  {
    Parameters<double> p;
    nn::UpDecoderBlock2D<double, R> up(p, "up_blocks.0", 4, 2, 2, 2, true);
    test::gradcheck_layer("UpDecoderBlock2D", up, p, {1, 4, 2, 3}, 23, 0.5);
  }
  {
    Parameters<double> p;
    nn::Encoder<double, R> enc(p, "encoder", tiny_kl(), 4, nn::Numerics::Exact);
    test::gradcheck_layer("Encoder", enc, p, {1, 2, 4, 4}, 24, 0.4);
  }
  {
    Parameters<double> p;
    nn::Decoder<double, R> dec(p, "decoder", tiny_kl(), nn::Numerics::Exact);
    test::gradcheck_layer("Decoder", dec, p, {1, 2, 2, 2}, 25, 0.4);
  }
}

TEST_CASE("AutoencoderKL and VQModel: whole-model gradients match finite differences", "[nn][gradcheck]") {
  {
    // L = sum(w1 decode(mode)) + sum(w2 kl): decoder, post_quant_conv, posterior, quant_conv, encoder.
    nn::AutoencoderKL<double, R> m(tiny_kl(), nn::Numerics::Exact);
    Rng rng(31);
    rng.fill_normal(m.parameters().values(), 0.0, 0.4);
    Tensor<double> x({1, 2, 4, 4});
    test::randomize(x.view(), rng);
    Tensor<double> out({1 * 2 * 4 * 4 + 1});
    ConstTensorView<double> dx;
    const auto fwd = [&]() -> ConstTensorView<double> {
      auto& post = m.encode(x.view());
      const auto kl = post.kl();
      const double k = kl[0];
      const auto y = m.decode(post.mode());
      std::copy(y.begin(), y.end(), out.begin());
      out[y.numel()] = k;
      return out.view();
    };
    const auto bwd = [&](ConstTensorView<double> dy) {
      dx = m.backward(ConstTensorView<double>(dy.data(), Shape{1, 2, 4, 4}),
                      ConstTensorView<double>(dy.data() + 32, Shape{1}));
    };
    test::GradCheckOptions opt;
    opt.max_elements = 6;
    const auto r = test::gradcheck("AutoencoderKL", fwd, bwd, {{"x", x.view(), [&] { return dx; }}},
                                   &m.parameters(), opt);
    CHECK(r.worst < 1e-6);
  }
  {
    // Sampling the posterior with fixed noise.
    nn::AutoencoderKL<double, R> m(tiny_kl(), nn::Numerics::Exact);
    Rng rng(32);
    rng.fill_normal(m.parameters().values(), 0.0, 0.4);
    Tensor<double> x({1, 2, 4, 4}), noise({1, 2, 2, 2});
    test::randomize(x.view(), rng);
    test::randomize(noise.view(), rng);
    ConstTensorView<double> dx;
    const auto fwd = [&]() -> ConstTensorView<double> { return m.decode(m.encode(x.view()).sample(noise.view())); };
    const auto bwd = [&](ConstTensorView<double> dy) { dx = m.backward(dy); };
    test::GradCheckOptions opt;
    opt.max_elements = 4;
    const auto r = test::gradcheck("AutoencoderKL sampled", fwd, bwd, {{"x", x.view(), [&] { return dx; }}},
                                   &m.parameters(), opt);
    CHECK(r.worst < 1e-6);
  }
  {
    // VQModel without quantization (the quantizer's own gradient is checked above).
    nn::VQModel<double, R> m(tiny_vq(), nn::Numerics::Exact);
    Rng rng(33);
    rng.fill_normal(m.parameters().values(), 0.0, 0.4);
    Tensor<double> x({1, 2, 4, 4});
    test::randomize(x.view(), rng);
    ConstTensorView<double> dx;
    const auto fwd = [&]() -> ConstTensorView<double> { return m.decode(m.encode(x.view()), true); };
    const auto bwd = [&](ConstTensorView<double> dy) { dx = m.backward(dy, 0.0); };
    test::GradCheckOptions opt;
    opt.max_elements = 6;
    // The codebook takes no gradient on this path (it is checked above).
    const auto r = test::gradcheck("VQModel (force_not_quantize)", fwd, bwd, {{"x", x.view(), [&] { return dx; }}},
                                   &m.parameters(), opt);
    CHECK(r.worst < 1e-6);
  }
}

#ifdef DDPM_TEST_HAVE_EIGEN
TEST_CASE("AutoencoderKL and VQModel: Eigen agrees with Reference, forward and backward", "[nn]") {
  const auto compare = [](ConstTensorView<double> a, ConstTensorView<double> b) {
    REQUIRE(a.shape() == b.shape());
    for (index_t i = 0; i < a.numel(); ++i) CHECK(a[i] == Approx(b[i]).margin(1e-12));
  };
  nn::AutoencoderKL<double, R> r(tiny_kl());
  nn::AutoencoderKL<double, backend::Cpu> e(tiny_kl());
  Rng rng(41);
  r.init(rng);
  std::copy(r.parameters().values().begin(), r.parameters().values().end(), e.parameters().values().begin());
  Tensor<double> x({2, 2, 6, 4}), noise({2, 2, 3, 2});
  test::randomize(x.view(), rng);
  test::randomize(noise.view(), rng);
  const Tensor<double> yr = Tensor<double>::copy_of(r.decode(r.encode(x.view()).sample(noise.view())));
  const Tensor<double> ye = Tensor<double>::copy_of(e.decode(e.encode(x.view()).sample(noise.view())));
  compare(yr.view(), ye.view());
  r.parameters().zero_grad();
  e.parameters().zero_grad();
  compare(r.backward(yr.view()), e.backward(yr.view()));
  const auto gr = r.parameters().grads(), ge = e.parameters().grads();
  for (std::size_t i = 0; i < gr.size(); ++i) CHECK(gr[i] == Approx(ge[i]).margin(1e-12));

  nn::VQModel<float, R> vr(tiny_vq());
  nn::VQModel<float, backend::Cpu> ve(tiny_vq());
  vr.init(rng);
  std::copy(vr.parameters().values().begin(), vr.parameters().values().end(), ve.parameters().values().begin());
  Tensor<float> xf({1, 2, 4, 4});
  rng.fill_normal(xf.span());
  vr.forward(xf.view());
  ve.forward(xf.view());
  CHECK(std::vector<std::int64_t>(vr.quantizer().indices().begin(), vr.quantizer().indices().end()) ==
        std::vector<std::int64_t>(ve.quantizer().indices().begin(), ve.quantizer().indices().end()));
}
#endif

// In inference the blocks pass the resnets' results through workspace slots
// (one output kept per block); training keeps every result. Same ops, same
// order: identical encode and decode, with 2 and 3 resnets a block (slots 2,
// 3, 2 in turn), both resamplers, and a second inference pass after training.
TEST_CASE("Autoencoder: inference through the workspace equals training", "[nn]") {
  auto c = tiny_kl();
  c.block_out_channels = {4, 6, 6};
  c.down_block_types.assign(3, "DownEncoderBlock2D");
  c.up_block_types.assign(3, "UpDecoderBlock2D");
  c.layers_per_block = 2;
  nn::AutoencoderKL<double, R> m(c);
  Rng rng(11);
  m.init(rng);
  Tensor<double> x({1, 2, 8, 12}), z({2, 2, 3, 2});
  test::randomize(x.view(), rng);
  test::randomize(z.view(), rng);
  auto run = [&](nn::Mode mode) {
    m.set_mode(mode);
    const auto mean = m.encode(x.view()).mean();
    std::vector<double> out(mean.begin(), mean.end());
    const auto y = m.decode(z.view());
    out.insert(out.end(), y.begin(), y.end());
    return out;
  };
  const auto train = run(nn::Mode::Training);
  const auto infer = run(nn::Mode::Inference);
  REQUIRE(infer.size() == train.size());
  CHECK(infer == train);
  (void)run(nn::Mode::Training);
  CHECK(run(nn::Mode::Inference) == train);
}
