// MLPDenoiser: end-to-end gradient check in double, save/load, errors.
#include <catch2/catch.hpp>

#include <filesystem>

#include "ddpm/backend/reference.hpp"
#include "ddpm/io/mlp_denoiser.hpp"
#include "ddpm/nn/mlp_denoiser.hpp"
#include "support/gradcheck.hpp"

using namespace ddpm;
using Net = nn::MLPDenoiser<double, backend::Reference>;

namespace {

nn::MLPDenoiserConfig small(int cond_dim, nn::CondMode mode) {
  nn::MLPDenoiserConfig c;
  c.data_dim = 2;
  c.cond_dim = cond_dim;
  c.cond_mode = mode;
  c.hidden = 6;
  c.depth = 3;
  c.time_embed_dim = 8;
  return c;
}

}  // namespace

TEST_CASE("MLPDenoiser gradients match central differences", "[models]") {
  for (auto [cond_dim, mode] : {std::pair{0, nn::CondMode::Concat}, std::pair{3, nn::CondMode::Concat},
                                std::pair{3, nn::CondMode::Add}}) {
    Net net(small(cond_dim, mode));
    Rng rng(42, 1);
    net.init(rng);
    Tensor<double> x({4, 2}), cond({4, 3});
    test::randomize(x.view(), rng);
    test::randomize(cond.view(), rng);
    const std::vector<double> t{0.0, 17.5, 400.0, 999.0};
    const ConstTensorView<double> cv = cond_dim ? ConstTensorView<double>(cond.view()) : ConstTensorView<double>{};
    std::vector<test::GradInput> ins;
    ConstTensorView<double> last_dx;
    ins.push_back({"x", x.view(), [&] { return last_dx; }});
    if (cond_dim) ins.push_back({"cond", cond.view(), [&] { return net.cond_grad(); }});
    const auto r = test::gradcheck(
        "mlp cond_dim=" + std::to_string(cond_dim) + (mode == nn::CondMode::Add ? " add" : " concat"),
        [&] { return net.forward(x.view(), std::span<const double>(t), cv); },
        [&](ConstTensorView<double> dy) { last_dx = net.backward(dy); }, ins, &net.parameters());
    CHECK(r.worst < 1e-6);
  }
}

// init(rng) draws the layers in a fixed order: layers.0 .. layers.<depth-1>,
// cond_proj (Add mode), out, each weight then bias with PyTorch's Linear
// bounds. The random stream it consumes is part of the contract (a seed gives
// the same weights in every version): replayed here layer by layer.
TEST_CASE("MLPDenoiser init(rng) draws its layers in the documented order", "[models]") {
  for (auto mode : {nn::CondMode::Concat, nn::CondMode::Add}) {
    const auto cfg = small(3, mode);
    Net net(cfg);
    Rng rng(11, 5);
    net.init(rng);
    const auto& p = net.parameters();
    Rng replay(11, 5);
    std::vector<std::pair<std::string, index_t>> order;  // (layer, fan_in)
    for (int i = 0; i < cfg.depth; ++i) order.emplace_back("layers." + std::to_string(i), i ? cfg.hidden : cfg.input_width());
    if (mode == nn::CondMode::Add) order.emplace_back("cond_proj", cfg.cond_dim);
    order.emplace_back("out", cfg.hidden);
    index_t covered = 0;
    for (const auto& [layer, fan_in] : order) {
      const auto w = p.value(p.id(layer + ".weight")), b = p.value(p.id(layer + ".bias"));
      Tensor<double> ew(w.shape()), eb(b.shape());
      nn::init_linear_default(ew.view(), eb.view(), fan_in, replay);
      INFO(layer);
      CHECK(std::equal(ew.begin(), ew.end(), w.begin()));
      CHECK(std::equal(eb.begin(), eb.end(), b.begin()));
      covered += w.numel() + b.numel();
    }
    CHECK(covered == p.numel());                   // every parameter was checked
    CHECK(replay.uniform() == rng.uniform());      // and init drew nothing else
  }
}

TEST_CASE("MLPDenoiser implements the Denoiser interface and checks its inputs", "[models]") {
  static_assert(nn::Denoiser<Net, double>);
  static_assert(nn::Denoiser<nn::MLPDenoiser<float, backend::Reference>, float>);
  Net net(small(3, nn::CondMode::Concat));
  Tensor<double> x({2, 2}), cond({2, 3}), bad({2, 4});
  const std::vector<double> t{1, 2};
  CHECK_THROWS_AS(net.forward(x.view(), std::span<const double>(t)), Error);  // cond missing
  CHECK_THROWS_AS(net.forward(x.view(), std::span<const double>(t), bad.view()), Error);
  const std::vector<double> t3{1, 2, 3};
  CHECK_THROWS_AS(net.forward(x.view(), std::span<const double>(t3), cond.view()), Error);
  nn::Conditioning<double> c;
  c.vector = cond.view();
  CHECK(net.forward(x.view(), std::span<const double>(t), c).shape() == Shape({2, 2}));
  auto bad_cfg = small(0, nn::CondMode::Concat);
  bad_cfg.depth = 0;
  CHECK_THROWS_AS(Net(bad_cfg), Error);
}

TEST_CASE("MLPDenoiser save/load round trip", "[models]") {
  const auto dir = std::filesystem::path(DDPM_TEST_TMP_DIR) / "mlp_denoiser";
  Net net(small(3, nn::CondMode::Add));
  Rng rng(7, 2);
  net.init(rng);
  io::save_mlp_denoiser(net, dir);
  auto back = io::load_mlp_denoiser<double, backend::Reference>(dir);
  CHECK(io::mlp_denoiser_config_to_json(back.config()) == io::mlp_denoiser_config_to_json(net.config()));
  CHECK(std::equal(back.parameters().values().begin(), back.parameters().values().end(),
                   net.parameters().values().begin()));
  Tensor<double> x({3, 2}, 0.3), cond({3, 3}, -0.2);
  const std::vector<double> t{5, 50, 500};
  const auto a = Tensor<double>::copy_of(net.forward(x.view(), std::span<const double>(t), cond.view()));
  const auto b = back.forward(x.view(), std::span<const double>(t), cond.view());
  CHECK(std::equal(a.begin(), a.end(), b.begin()));
  // A float model reads the double checkpoint.
  auto f = io::load_mlp_denoiser<float, backend::Reference>(dir);
  CHECK(f.num_parameters() == net.num_parameters());
  // Config errors name the file and key.
  io::write_text_file(dir / "config.json", R"({"data_dim": 2, "hidden": "wide"})");
  try {
    io::load_mlp_denoiser<double, backend::Reference>(dir);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("hidden") != std::string::npos);
    CHECK(std::string(e.what()).find("config.json") != std::string::npos);
  }
  io::write_text_file(dir / "config.json", R"({"data_dim": 2, "cond_mode": "film"})");
  const auto load = [&] { return io::load_mlp_denoiser<double, backend::Reference>(dir); };
  CHECK_THROWS_WITH(load(), Catch::Contains("cond_mode"));
}
