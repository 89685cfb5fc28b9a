// UNet2D in training: dropout in the ResNet blocks drawn from per-sample
// streams (gradient check with a fixed mask; the mask a function of the
// sample's stream only; identity in inference), and image conditioning
// (the network sees exactly cat([x, image]); bad shapes; the config key).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/io/unet_config_json.hpp"
#include "ddpm/nn/dropout.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "ddpm/train/objective.hpp"
#include "support/gradcheck.hpp"
#include "support/tiny_unet.hpp"

using namespace ddpm;
using UNet = nn::UNet2D<double, backend::Reference>;

namespace {

nn::UNet2DConfig tiny(double dropout, int condition_channels = 0, bool scale_shift = false) {
  auto c = test::tiny_unet_config(2, condition_channels, dropout);
  c.resnet_time_scale_shift = scale_shift ? "scale_shift" : "default";
  return c;
}

std::vector<Rng> streams(std::uint64_t seed, std::int64_t step, index_t offset, index_t n) {
  const train::SampleStreams s{seed, step, offset};
  std::vector<Rng> r;
  for (index_t i = 0; i < n; ++i) r.push_back(s.dropout_rng(i));
  return r;
}

std::vector<double> copy(ConstTensorView<double> v) { return {v.begin(), v.end()}; }

}  // namespace

TEST_CASE("Dropout masks: 0 or 1/(1-p), rate p, a function of each sample's stream only", "[models][dropout]") {
  using D = nn::Dropout<double, backend::Reference>;
  const double p = 0.3;
  nn::DropoutStreams st;
  D drop("d", p, &st);
  Tensor<double> x({8, 3, 16, 16}, 1.0);
  st.arm(streams(7, 5, 0, 8));
  const auto m8 = copy(drop.forward(x.cview()));
  REQUIRE(drop.applied());
  index_t dropped = 0;
  for (double v : m8) {
    CHECK((v == 0.0 || v == 1.0 / (1.0 - p)));
    dropped += v == 0.0;
  }
  // 6144 Bernoulli(0.3) draws: within 4 standard deviations (0.0234) of p.
  CHECK(static_cast<double>(dropped) / 6144.0 == Approx(p).margin(0.024));
  // Samples 4..7 alone, as a batch of 4 with global offset 4: the same masks.
  st.arm(streams(7, 5, 4, 4));
  const auto m4 = copy(drop.forward(x.cview().slice(4, 4)));
  CHECK(std::equal(m4.begin(), m4.end(), m8.begin() + 4 * 768));
  // Another step, another mask.
  st.arm(streams(7, 6, 4, 4));
  const auto m4b = copy(drop.forward(x.cview().slice(4, 4)));
  CHECK(!std::equal(m4b.begin(), m4b.end(), m8.begin() + 4 * 768));
  // Backward: the same mask.
  Tensor<double> dy({4, 3, 16, 16}, 2.0);
  const auto dx = copy(drop.backward(dy.cview()));
  for (std::size_t i = 0; i < dx.size(); ++i) CHECK(dx[i] == 2.0 * m4b[i]);
  // Not armed (the streams serve one forward; the UNet disarms them), or in inference: the identity.
  st.disarm();
  CHECK(drop.forward(x.cview()).data() == x.data());
  CHECK(!drop.applied());
  st.arm(streams(7, 5, 0, 8));
  drop.set_mode(nn::Mode::Inference);
  CHECK(drop.forward(x.cview()).data() == x.data());
  // Streams for another batch size: an error.
  drop.set_mode(nn::Mode::Training);
  st.arm(streams(7, 5, 0, 3));
  CHECK_THROWS_WITH(drop.forward(x.cview()), Catch::Contains("3 per-sample dropout streams for a batch of 8"));
}

TEST_CASE("UNet2D with dropout: gradients with a fixed mask match central differences (double)", "[models][dropout]") {
  for (bool ss : {false, true}) {
    UNet net(tiny(0.25, 0, ss), nn::Numerics::Exact);
    Rng rng(3, 4);
    net.init(rng);
    for (auto& v : net.parameters().values()) v += 0.05 * rng.normal();
    Tensor<double> x({2, 2, 4, 4});
    test::randomize(x.view(), rng);
    const std::vector<double> t{3.0, 711.25};
    const auto rngs = streams(11, 2, 0, 2);
    // The mask matters: the dropped forward differs from the eval-mode one.
    const auto eval = copy(net.forward(x.view(), std::span<const double>(t)));
    net.set_dropout_rngs(rngs);
    const auto dropped = copy(net.forward(x.view(), std::span<const double>(t)));
    CHECK(eval != dropped);
    ConstTensorView<double> dx;
    test::GradCheckOptions opt;
    opt.max_elements = 6;
    const auto r = test::gradcheck(
        std::string("unet2d dropout ") + (ss ? "scale_shift" : "default"),
        [&] {
          net.set_dropout_rngs(rngs);  // the same mask for every evaluation
          return net.forward(x.view(), std::span<const double>(t));
        },
        [&](ConstTensorView<double> dy) { dx = net.backward(dy); }, {{"x", x.view(), [&] { return dx; }}},
        &net.parameters(), opt);
    CHECK(r.worst < 1e-6);
  }
}

TEST_CASE("UNet2D dropout: a sample's output depends on its stream, not its batch; inference ignores it",
          "[models][dropout]") {
  UNet net(tiny(0.4));
  Rng rng(8);
  net.init(rng);
  Tensor<double> x({8, 2, 4, 4});
  test::randomize(x.view(), rng);
  std::vector<double> t(8);
  for (index_t i = 0; i < 8; ++i) t[static_cast<std::size_t>(i)] = 100.0 * static_cast<double>(i);
  net.set_dropout_rngs(streams(5, 3, 0, 8));
  const auto y8 = copy(net.forward(x.cview(), std::span<const double>(t)));
  net.set_dropout_rngs(streams(5, 3, 4, 4));
  const auto y4 = copy(net.forward(x.cview().slice(4, 4), std::span<const double>(t).subspan(4)));
  CHECK(std::equal(y4.begin(), y4.end(), y8.begin() + 4 * 32));
  // Inference: the same as the model without dropout (dropout draws no weights).
  UNet plain(tiny(0.0));
  Rng rng2(8);
  plain.init(rng2);
  const auto want = copy(plain.forward(x.cview(), std::span<const double>(t)));
  net.set_mode(nn::Mode::Inference);
  net.set_dropout_rngs(streams(5, 3, 0, 8));
  CHECK(copy(net.forward(x.cview(), std::span<const double>(t))) == want);
  // A training forward without streams runs as eval mode, and its backward is refused.
  net.set_mode(nn::Mode::Training);
  CHECK(copy(net.forward(x.cview(), std::span<const double>(t))) == want);
  Tensor<double> dy({8, 2, 4, 4}, 1.0);
  CHECK_THROWS_WITH(net.backward(dy.cview()), Catch::Contains("dropout = 0.4") && Catch::Contains("set_dropout_rngs"));
  static_assert(StochasticDenoiser<UNet>);
}

TEST_CASE("UNet2D with a condition image sees exactly cat([x, image], dim=1)", "[models][condition]") {
  for (bool cpu : {false, true}) {
    auto check = [](auto& net) {
      using T = typename std::remove_reference_t<decltype(net)>::scalar_type;
      Rng rng(21);
      net.init(rng);
      Tensor<T> x({3, 2, 4, 4}), img({3, 1, 4, 4}), cat({3, 3, 4, 4});
      rng.fill_normal(x.span());
      rng.fill_normal(img.span());
      for (index_t n = 0; n < 3; ++n)
        for (index_t c = 0; c < 3; ++c)
          for (index_t k = 0; k < 16; ++k) cat[(n * 3 + c) * 16 + k] = c < 2 ? x[(n * 2 + c) * 16 + k] : img[n * 16 + k];
      const std::vector<T> t{1, 50, 999};
      const std::vector<double> td(t.begin(), t.end());
      Conditioning<T> cond;
      cond.image = img.cview();
      const ConstTensorView<T> yv = net.forward(x.cview(), std::span<const T>(t), cond);
      const std::vector<T> y(yv.begin(), yv.end());
      Tensor<T> dy({3, 2, 4, 4});
      rng.fill_normal(dy.span());
      net.parameters().zero_grad();
      const ConstTensorView<T> dxv = net.backward(dy.cview());
      REQUIRE(dxv.shape() == x.shape());
      const std::vector<T> dx(dxv.begin(), dxv.end());
      const std::vector<T> g(net.parameters().grads().begin(), net.parameters().grads().end());
      // The unconditioned call on the manually concatenated input.
      const ConstTensorView<T> mv = net.forward(cat.cview(), std::span<const double>(td));
      CHECK(std::vector<T>(mv.begin(), mv.end()) == y);
      net.parameters().zero_grad();
      const ConstTensorView<T> dcat = net.backward(dy.cview());
      REQUIRE(dcat.dim(1) == 3);
      for (index_t n = 0; n < 3; ++n)
        for (index_t c = 0; c < 2; ++c)
          for (index_t k = 0; k < 16; ++k) CHECK(dx[static_cast<std::size_t>((n * 2 + c) * 16 + k)] == dcat[(n * 3 + c) * 16 + k]);
      CHECK(std::vector<T>(net.parameters().grads().begin(), net.parameters().grads().end()) == g);
    };
    if (cpu) {
      nn::UNet2D<float, backend::Cpu> net(tiny(0.0, 1));
      check(net);
    } else {
      UNet net(tiny(0.0, 1));
      check(net);
    }
  }
}

TEST_CASE("UNet2D condition image: bad shapes are one-line errors naming both shapes", "[models][condition][errors]") {
  UNet net(tiny(0.0, 1));
  Tensor<double> x({2, 2, 4, 4}, 0.1), two({2, 2, 4, 4}, 0.1), small({2, 1, 2, 2}, 0.1), batch({3, 1, 4, 4}, 0.1);
  const std::vector<double> t{1.0, 2.0};
  const auto fwd = [&](const Tensor<double>& img) {
    Conditioning<double> c;
    c.image = img.cview();
    net.forward(x.cview(), std::span<const double>(t), c);
  };
  // (Catch's combined matchers hold their parts by reference: spelled out at each use.)
  const auto x_t = Catch::Contains("x_t [2, 2, 4, 4]");
  const auto in = Catch::Contains("in_channels = 3");
  CHECK_THROWS_WITH(fwd(two), Catch::Contains("condition image [2, 2, 4, 4]") && x_t && in);
  CHECK_THROWS_WITH(fwd(small), Catch::Contains("condition image [2, 1, 2, 2]") && x_t && in);
  CHECK_THROWS_WITH(fwd(batch), Catch::Contains("condition image [3, 1, 4, 4]") && x_t && in);
  try {
    fwd(two);
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find('\n') == std::string::npos);
  }
  // No condition image for a model that takes one.
  CHECK_THROWS_WITH(net.forward(x.cview(), std::span<const double>(t)),
                    Catch::Contains("x_t [2, 2, 4, 4] without its condition image") && Catch::Contains("1 channels"));
  // A condition the config cannot hold.
  auto bad = tiny(0.0, 1);
  bad.condition_channels = 3;
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("condition_channels = 3") && Catch::Contains("in_channels = 3"));
}

TEST_CASE("condition_channels is saved as ddpm_condition_channels, a key diffusers ignores", "[models][condition]") {
  const auto c = tiny(0.1, 1);
  const auto j = io::unet2d_config_to_json(c);
  CHECK(j.at("ddpm_condition_channels") == 1);
  CHECK(j.at("in_channels") == 3);
  CHECK(j.at("out_channels") == 2);
  CHECK(j.at("dropout") == 0.1);
  std::vector<std::string> ignored;
  const auto back = io::parse_unet2d_config(j, "config.json", &ignored);
  CHECK(back.condition_channels == 1);
  CHECK(ignored.empty());
  // Without a condition the key is not written (a plain diffusers config).
  CHECK(!io::unet2d_config_to_json(tiny(0.0)).contains("ddpm_condition_channels"));
  auto j2 = j;
  j2["ddpm_condition_channels"] = 5;
  CHECK_THROWS_WITH(io::parse_unet2d_config(j2, "model/config.json"),
                    Catch::Contains("model/config.json") && Catch::Contains("condition_channels = 5"));
}
