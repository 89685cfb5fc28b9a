// UNet2DModel forward (and one backward) against diffusers, for every unet
// case of the manifest, on every CPU backend, in float and in double.
//
//   float:                 output            (case tolerance "output")
//   double, Diffusers:     output_f64        (float32 time embedding + softmax, as diffusers' model.double())
//   double, Exact:         output_f64_exact  (pure double)
//   intermediates (float): the case's stated rule, "1e-5 x max|tensor| (t_emb: 2e-4 absolute ...)"
//   gradients (grad.safetensors): per tensor max|g - ref| <= rtol max|ref| + atol_global G;
//                          the loss mean(y^2) to what the output tolerance allows it
#include "support/golden.hpp"

#include <cstdio>

#include "ddpm/backend/reference.hpp"
#include "ddpm/io/diffusers.hpp"
#include "ddpm/nn/unet2d.hpp"
#if __has_include("ddpm/backend/cpu.hpp")
#include "ddpm/backend/cpu.hpp"
#define DDPM_TEST_HAVE_EIGEN 1
#endif

using namespace ddpm;
using namespace ddpm::test;

namespace {

struct UNetCase {
  std::string name;
  fs::path dir;
  json info;  // case.json
  io::SafeTensors io;
  std::vector<double> timesteps;
  std::vector<std::int64_t> labels;
};

std::vector<UNetCase> load_cases() {
  std::vector<UNetCase> out;
  const auto g = load_kind("unet");
  if (!g) return out;
  for (const auto& c : g->cases()) {
    const std::string name = c.at("name").get<std::string>();
    const fs::path dir = g->case_dir(c);
    UNetCase u{name, dir, load_json(dir / "case.json"), io::SafeTensors::load(dir / "io.safetensors"), {}, {}};
    const auto t = u.io.get<double>("timestep");
    u.timesteps.assign(t.begin(), t.end());
    if (u.io.contains("class_labels")) u.labels = u.io.get_int64("class_labels");
    out.push_back(std::move(u));
  }
  if (out.empty()) FAIL("unet: no cases");
  return out;
}

double tol(const UNetCase& c, const char* key) { return c.info.at("tolerance").at(key).at("atol").get<double>(); }

template <class T>
void compare(DeviationReport& rep, const std::string& quantity, ConstTensorView<T> x, const Tensor<double>& ref,
             double atol) {
  const Deviation d = deviation(x, ref.cview(), atol, 0.0);
  rep.add(quantity, d);
  INFO(quantity << ": max |x - ref| = " << d.max_abs << " (allowed " << atol << "), worst fraction "
                << d.worst_ratio << " at " << d.worst_index);
  CHECK(d.shape_ok);
  CHECK(d.ok());
}

template <Scalar T, backend::Backend B>
nn::UNet2D<T, B> load_model(const UNetCase& c, nn::Numerics numerics) {
  io::DiffusersLoadOptions opt;
  opt.numerics = numerics;
  auto m = io::load_unet2d<T, B>(c.dir, opt);
  m.set_mode(nn::Mode::Inference);
  return m;
}

// Our own pure-double run: the arbiter for float32 intermediates (diffusers
// stores no float64 intermediates).
template <backend::Backend B>
std::map<std::string, Tensor<double>> exact_intermediates(const UNetCase& c) {
  auto m = load_model<double, B>(c, nn::Numerics::Exact);
  m.record_intermediates(true);
  m.forward(c.io.get<double>("sample").view(), std::span<const double>(c.timesteps), c.labels);
  std::map<std::string, Tensor<double>> out;
  for (const auto& [stage, view] : m.intermediates()) out.emplace(stage, Tensor<double>::copy_of(view));
  return out;
}

template <Scalar T, backend::Backend B>
void check_forward(const UNetCase& c, DeviationReport& rep) {
  const std::string be(B::name());
  const Tensor<T> x = c.io.get<T>("sample");
  if constexpr (std::is_same_v<T, float>) {
    auto m = load_model<T, B>(c, nn::Numerics::Diffusers);
    m.record_intermediates(true);
    const auto y = m.forward(x.view(), std::span<const double>(c.timesteps), c.labels);
    compare(rep, "float/" + be + "/output", y, c.io.get<double>("output"), tol(c, "output"));
    // Intermediates, to localise a mismatch, to the case's stated rule (e.g.
    // "float32: 1e-5 x max|tensor| (t_emb: 2e-4 absolute ...)"). Where
    // diffusers' own float32 tensor is further than that from the exact
    // (double) value, two float32 implementations round independently: its own
    // error times the margin the case grants the output over diffusers' own
    // float32 error (tolerance.output / measured float32-vs-exact) is allowed.
    const json& tol_text = c.info.at("tolerance").at("intermediate");
    const double rel_of_max = stated_number(tol_text, {"float32:"}, "case " + c.name + " intermediate tolerance");
    const double t_emb_atol = stated_number(tol_text, {"t_emb:"}, "case " + c.name + " intermediate tolerance");
    const double own_margin =
        tol(c, "output") /
        c.info.at("measured").at("output_float32_vs_output_f64_exact").at("max_abs_diff").get<double>();
    const auto exact = exact_intermediates<B>(c);
    for (const auto& [stage, view] : m.intermediates()) {
      const std::string key = "intermediate/" + stage;
      if (!c.io.contains(key)) continue;
      const Tensor<double> ref = c.io.get<double>(key);
      double mx = 0, own = 0;
      for (double v : ref) mx = std::max(mx, std::abs(v));
      if (auto it = exact.find(stage); it != exact.end() && it->second.numel() == ref.numel())
        for (index_t i = 0; i < ref.numel(); ++i) own = std::max(own, std::abs(ref[i] - it->second[i]));
      const double atol = std::max(stage == "t_emb" ? t_emb_atol : rel_of_max * mx, own_margin * own);
      compare(rep, "float/" + be + "/" + key, view, ref, atol);
    }
    // Legacy attention names load the same weights.
    const fs::path legacy = c.dir / "diffusion_pytorch_model.legacy_attention_names.safetensors";
    if (fs::exists(legacy)) {
      nn::UNet2D<T, B> l(m.config());
      io::load_unet2d_weights(l, legacy);
      CHECK(std::equal(l.parameters().values().begin(), l.parameters().values().end(),
                       m.parameters().values().begin()));
      const auto st = io::SafeTensors::load(legacy);
      bool has_legacy = false;
      for (const auto& n : st.names()) has_legacy |= n.find(".query.") != std::string::npos;
      CHECK(has_legacy);
    }
  } else {
    // A pure-double implementation against both references, with their tolerances
    // (both are stated "for a float64 implementation computing everything in double").
    auto me = load_model<T, B>(c, nn::Numerics::Exact);
    const auto ye = Tensor<T>::copy_of(me.forward(x.view(), std::span<const double>(c.timesteps), c.labels));
    compare(rep, "double/" + be + "/output_f64_exact (Numerics::Exact)", ye.view(),
            c.io.get<double>("output_f64_exact"), tol(c, "output_f64_exact"));
    compare(rep, "double/" + be + "/output_f64 (Numerics::Exact)", ye.view(), c.io.get<double>("output_f64"),
            tol(c, "output_f64"));
    // Numerics::Diffusers (float32 time embedding and softmax, as diffusers'
    // model.double()) rounds in float32 like diffusers but not bit-identically
    // (exp/sin/cos differ by an ulp between libm and PyTorch): float32 tolerance.
    auto md = load_model<T, B>(c, nn::Numerics::Diffusers);
    compare(rep, "double/" + be + "/output_f64 (Numerics::Diffusers)",
            md.forward(x.view(), std::span<const double>(c.timesteps), c.labels), c.io.get<double>("output_f64"),
            tol(c, "output"));
  }
}

// loss = mean(output^2): dL/doutput = 2 output / numel.
template <Scalar T, backend::Backend B>
void check_gradients(const UNetCase& c, DeviationReport& rep, nn::Numerics numerics, const std::string& suffix,
                     const char* tol_key, const char* output_tol_key) {
  const fs::path gfile = c.dir / "grad.safetensors";
  if (!fs::exists(gfile)) return;
  const auto grads = io::SafeTensors::load(gfile);
  const json& gi = c.info.at("gradient");
  const double G = gi.at("global_max_abs_grad").get<double>();
  const double rtol = gi.at("tolerance").at(tol_key).at("rtol").get<double>();
  const double atol_g = gi.at("tolerance").at(tol_key).at("atol_global").get<double>() * G;
  const std::string qty = std::string(std::is_same_v<T, float> ? "float/" : "double/") + std::string(B::name()) +
                          "/grad" + suffix;

  io::DiffusersLoadOptions opt;
  opt.numerics = numerics;
  auto m = io::load_unet2d<T, B>(c.dir, opt);
  m.set_mode(nn::Mode::Training);
  const Tensor<T> x = c.io.get<T>("sample");
  const auto y = m.forward(x.view(), std::span<const double>(c.timesteps), c.labels);
  Tensor<T> dy(y.shape());
  double loss = 0;
  for (index_t i = 0; i < y.numel(); ++i) {
    loss += static_cast<double>(y[i]) * static_cast<double>(y[i]);
    dy[i] = T{2} * y[i] / static_cast<T>(y.numel());
  }
  loss /= static_cast<double>(y.numel());
  // |y - y_ref| <= atol (the forward check's tolerance for this run) bounds
  // |mean(y^2) - mean(y_ref^2)| by mean(2 |y_ref| atol + atol^2).
  const double ref_loss = grads.get<double>("loss" + suffix)[0];
  const double out_atol = tol(c, output_tol_key);
  double loss_tol = 0;
  for (double v : c.io.get<double>("output" + suffix)) loss_tol += 2 * std::abs(v) * out_atol + out_atol * out_atol;
  loss_tol /= static_cast<double>(y.numel());
  INFO("loss " << loss << ", diffusers " << ref_loss << ", allowed " << loss_tol);
  CHECK(std::abs(loss - ref_loss) <= loss_tol);
  m.parameters().zero_grad();
  const auto dx = m.backward(dy.view());

  const auto check_one = [&](const std::string& name, ConstTensorView<T> g) {
    const std::string key = "grad/" + name + suffix;
    INFO("gradient " << key);
    REQUIRE(grads.contains(key));
    const Tensor<double> ref = grads.get<double>(key);
    double mx = 0;
    for (double v : ref) mx = std::max(mx, std::abs(v));
    const Deviation d = deviation(g, ref.cview(), rtol * mx + atol_g, 0.0);
    rep.add(qty, d);
    INFO("max |g - ref| = " << d.max_abs << ", allowed " << rtol * mx + atol_g);
    CHECK(d.ok());
  };
  check_one("sample", dx);
  std::size_t n = 0;
  for (const auto& p : m.parameters().infos()) {
    check_one(p.name, m.parameters().grad(m.parameters().id(p.name)));
    ++n;
  }
  // Every parameter gradient in the file was checked.
  std::size_t in_file = 0;
  for (const auto& k : grads.names())
    if (k.rfind("grad/", 0) == 0 && k != "grad/sample" + suffix && k.size() >= suffix.size() &&
        k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        (suffix.empty() ? (k.find("_f64") == std::string::npos) : true))
      ++in_file;
  CHECK(in_file == n);
}

template <backend::Backend B>
void check_backend(DeviationReport& rep) {
  for (const auto& c : load_cases()) {
    SECTION(c.name) {
      INFO("case " << c.name << ", backend " << B::name());
      check_forward<float, B>(c, rep);
      check_forward<double, B>(c, rep);
      // Output tolerances as in check_forward (Numerics::Diffusers in double: float32's).
      check_gradients<float, B>(c, rep, nn::Numerics::Diffusers, "", "grad", "output");
      check_gradients<double, B>(c, rep, nn::Numerics::Exact, "_f64_exact", "grad_f64_exact", "output_f64_exact");
      check_gradients<double, B>(c, rep, nn::Numerics::Diffusers, "_f64", "grad_f64", "output");
      rep.count_case();
    }
  }
}

}  // namespace

TEST_CASE("unet: diffusers UNet2DModel forward and backward, reference backend", "[golden]") {
  static DeviationReport rep("unet (reference backend)");
  check_backend<backend::Reference>(rep);
}

#ifdef DDPM_TEST_HAVE_EIGEN
TEST_CASE("unet: diffusers UNet2DModel forward and backward, eigen backend", "[golden]") {
  static DeviationReport rep("unet (eigen backend)");
  check_backend<backend::Cpu>(rep);
}
#endif

TEST_CASE("unet: golden model folders round-trip through save_unet2d", "[golden]") {
  DeviationReport rep("unet");
  for (const auto& c : load_cases()) {
    INFO("case " << c.name);
    auto m = io::load_unet2d<float, backend::Reference>(c.dir);
    const fs::path out = fs::path(DDPM_TEST_TMP_DIR) / ("unet_roundtrip_" + c.name);
    io::save_unet2d(m, out);
    auto back = io::load_unet2d<float, backend::Reference>(out);
    CHECK(io::unet2d_config_to_json(back.config()) == io::unet2d_config_to_json(m.config()));
    CHECK(std::equal(back.parameters().values().begin(), back.parameters().values().end(),
                     m.parameters().values().begin()));
    // diffusers' config.json and ours describe the same model.
    const json theirs = load_json(c.dir / "config.json"), ours = load_json(out / "config.json");
    for (auto& [k, v] : theirs.items())
      if (k[0] != '_') CHECK(ours.at(k) == v);
    rep.count_case();
  }
}
