// AutoencoderKL and VQModel against diffusers, for every case of the golden
// `autoencoder` kind (README: tests/data/golden-more/autoencoder.README.md),
// on every CPU backend, in float and double. Data driven: the cases come from
// index.json and the checked tensors from each case's tolerance tables, so a
// tensor the case lists but this test does not compute fails.
//
//   float:           plain tensors at case.json tolerance.float32.atol
//   double (Exact):  *_f64_exact at tolerance.f64_exact.atol (pure double)
//   (*_f64, diffusers' float32 softmax in a double model, is not compared: our
//   float32 softmax sums in another order, and the README's float64 target is _f64_exact)
//   intermediates (float): intermediate/<module>.out at tolerance.intermediate.atol
//   indices (VQModel): exactly
//   gradients (grad.safetensors): per tensor max|g - ref| <= rtol max|ref| + atol_global G
//     (float32 rtol 1e-3, atol_global 1e-6; pure float64 rtol 1e-9, atol_global 1e-12)
//   legacy attention names: the same weights load from the old names and give the same output
//   published configs: the model built from config.json has diffusers' names, shapes and counts
#include "support/golden.hpp"

#include <cstdio>
#include <set>

#include "ddpm/backend/reference.hpp"
#include "ddpm/io/autoencoder.hpp"
#include "ddpm/nn/autoencoder_kl.hpp"
#include "ddpm/nn/vq_model.hpp"
#if __has_include("ddpm/backend/cpu.hpp")
#include "ddpm/backend/cpu.hpp"
#define DDPM_TEST_HAVE_EIGEN 1
#endif

using namespace ddpm;
using namespace ddpm::test;

namespace {

struct AECase {
  std::string name, model;
  fs::path dir;
  json info;  // case.json
  io::SafeTensors io;
  std::optional<io::SafeTensors> grad;
};

std::vector<AECase> load_cases() {
  std::vector<AECase> out;
  const auto g = load_kind("autoencoder");
  if (!g) return out;
  for (const auto& c : g->cases()) {
    const fs::path dir = g->case_dir(c);
    AECase a{c.at("name").get<std::string>(), c.at("model").get<std::string>(), dir, load_json(dir / "case.json"),
             io::SafeTensors::load(dir / "io.safetensors"), std::nullopt};
    if (fs::exists(dir / "grad.safetensors")) a.grad = io::SafeTensors::load(dir / "grad.safetensors");
    out.push_back(std::move(a));
  }
  if (out.empty()) FAIL("autoencoder: no cases");
  return out;
}

DeviationReport& report() {
  static DeviationReport rep("autoencoder");
  return rep;
}

// The computed tensors of one run, by the stored name (without suffix).
template <class T>
using Results = std::map<std::string, Tensor<T>>;

template <class T>
void keep(Results<T>& r, const std::string& name, ConstTensorView<T> x) {
  r.insert_or_assign(name, Tensor<T>::copy_of(x));
}

// Every tensor of the tolerance table `table` (float32, f64, f64_exact,
// intermediate) against io[<name><suffix>].
template <class T>
void compare_table(const AECase& c, const Results<T>& r, const std::string& table, const std::string& suffix,
                   const std::string& label) {
  const json& atol = c.info.at("tolerance").at(table).at("atol");
  REQUIRE(!atol.empty());
  for (auto& [name, tol] : atol.items()) {
    const std::string stored = table == "intermediate" ? "intermediate/" + name : name + suffix;
    const std::string key = table == "intermediate" ? name.substr(0, name.size() - 4) : name;  // drop ".out"
    INFO(c.name << " " << label << ": " << stored);
    REQUIRE(c.io.contains(stored));
    const auto it = r.find(key);
    if (it == r.end()) FAIL("the test computes no '" << key << "' (listed in the case's " << table << " tolerances)");
    const Tensor<double> ref = c.io.get<double>(stored);
    const double allowed = tol.template get<double>();
    const Deviation d = deviation(it->second.cview(), ref.cview(), allowed, 0.0);
    report().add(table + " " + (table == "intermediate" ? std::string("intermediates") : key), d);
    INFO("max |x - ref| = " << d.max_abs << " (allowed " << allowed << "), worst fraction "
                            << d.worst_ratio << " at " << d.worst_index);
    CHECK(d.shape_ok);
    CHECK(it->second.shape() == ref.shape());
    CHECK(d.ok());
  }
}

template <Scalar T, backend::Backend B, class Model>
Model load_model(const AECase& c, nn::Numerics numerics, const std::string& weights = "") {
  io::DiffusersLoadOptions opt;
  opt.numerics = numerics;
  Model m = [&] {
    if constexpr (std::is_same_v<typename Model::config_type, nn::VQModelConfig>)
      return io::load_vq_model<T, B>(c.dir, opt);
    else
      return io::load_autoencoder_kl<T, B>(c.dir, opt);
  }();
  if (!weights.empty()) io::load_autoencoder_weights(m, c.dir / weights, opt);
  return m;
}

template <Scalar T>
Tensor<T> input(const AECase& c, const std::string& name) {
  return c.io.get<T>(name);
}

// The forward quantities of an AutoencoderKL case.
template <Scalar T, backend::Backend B>
Results<T> run_kl(const AECase& c, nn::Numerics numerics, const std::string& weights = "") {
  auto m = load_model<T, B, nn::AutoencoderKL<T, B>>(c, numerics, weights);
  m.set_mode(nn::Mode::Inference);
  Results<T> r;
  const Tensor<T> x = input<T>(c, "sample");
  auto& post = m.encode(x.cview());
  keep(r, "latent_mean", post.mean());
  keep(r, "latent_logvar", post.logvar());
  const Tensor<T> noise = input<T>(c, "posterior_noise");
  const ConstTensorView<T> z = post.sample(noise.cview());
  keep(r, "latent_sample", z);
  keep(r, "kl", post.kl());
  const auto& cfg = m.config();
  Tensor<T> scaled(z.shape());
  for (index_t i = 0; i < z.numel(); ++i)
    scaled[i] = (z[i] - static_cast<T>(cfg.shift_factor.value_or(0.0))) * static_cast<T>(cfg.scaling_factor);
  r.insert_or_assign("scaled_latent", std::move(scaled));
  const Tensor<T> zin = input<T>(c, "decode_input");
  keep(r, "decoded", m.decode(zin.cview()));
  {
    Tensor<T> u(zin.shape());
    for (index_t i = 0; i < u.numel(); ++i)
      u[i] = zin[i] / static_cast<T>(cfg.scaling_factor) + static_cast<T>(cfg.shift_factor.value_or(0.0));
    keep(r, "decoded_unscaled", m.decode(u.cview()));
  }
  m.record_intermediates(true);
  keep(r, "output", m.forward(x.cview()));
  for (const auto& [k, v] : m.intermediates()) keep(r, k, v);
  return r;
}

template <Scalar T, backend::Backend B>
Results<T> run_vq(const AECase& c, nn::Numerics numerics, std::vector<std::int64_t>* indices = nullptr,
                  const std::string& weights = "") {
  auto m = load_model<T, B, nn::VQModel<T, B>>(c, numerics, weights);
  m.set_mode(nn::Mode::Inference);
  Results<T> r;
  const Tensor<T> x = input<T>(c, "sample");
  const Tensor<T> lat = Tensor<T>::copy_of(m.encode(x.cview()));
  keep(r, "latents", lat.cview());
  keep(r, "decoded", m.decode(lat.cview()));
  keep(r, "quantized", m.quantizer().quantized());
  if (indices) indices->assign(m.quantizer().indices().begin(), m.quantizer().indices().end());
  Tensor<T> loss({1});
  loss[0] = m.quantizer().commit_loss();
  r.insert_or_assign("commit_loss", std::move(loss));
  keep(r, "decoded_no_quant", m.decode(lat.cview(), true));
  m.record_intermediates(true);
  keep(r, "output", m.forward(x.cview()));
  for (const auto& [k, v] : m.intermediates()) keep(r, k, v);
  return r;
}

template <Scalar T, backend::Backend B>
Results<T> run(const AECase& c, nn::Numerics numerics) {
  if (c.model == "VQModel") return run_vq<T, B>(c, numerics);
  REQUIRE(c.model == "AutoencoderKL");
  return run_kl<T, B>(c, numerics);
}

template <backend::Backend B>
void check_forward(const std::string& backend_name) {
  for (const auto& c : load_cases()) {
    const std::string label = backend_name;
    compare_table(c, run<float, B>(c, nn::Numerics::Diffusers), "float32", "", label + " float");
    compare_table(c, run<float, B>(c, nn::Numerics::Diffusers), "intermediate", "", label + " float");
    compare_table(c, run<double, B>(c, nn::Numerics::Exact), "f64_exact", "_f64_exact", label + " double exact");
    if (c.model == "VQModel") {
      const auto ref = c.io.get_int64("indices");
      for (const char* prec : {"float", "double"}) {
        std::vector<std::int64_t> idx;
        if (std::string(prec) == "float")
          run_vq<float, B>(c, nn::Numerics::Diffusers, &idx);
        else
          run_vq<double, B>(c, nn::Numerics::Exact, &idx);
        INFO(c.name << " " << backend_name << " " << prec << ": indices");
        REQUIRE(idx.size() == ref.size());
        std::size_t wrong = 0;
        for (std::size_t i = 0; i < idx.size(); ++i) wrong += idx[i] != ref[i];
        CHECK(wrong == 0);
      }
    }
    // Legacy attention names: same weights, same output (bit for bit).
    const std::string legacy = "diffusion_pytorch_model.legacy_attention_names.safetensors";
    if (fs::exists(c.dir / legacy)) {
      const auto a = run<float, B>(c, nn::Numerics::Diffusers);
      const auto b = c.model == "VQModel" ? run_vq<float, B>(c, nn::Numerics::Diffusers, nullptr, legacy)
                                          : run_kl<float, B>(c, nn::Numerics::Diffusers, legacy);
      const auto& x = a.at("output");
      const auto& y = b.at("output");
      INFO(c.name << ": output with the legacy attention names");
      REQUIRE(x.shape() == y.shape());
      CHECK(std::equal(x.begin(), x.end(), y.begin()));
    }
    if (std::string(backend_name) == "Reference") report().count_case();
  }
}

// dL/d(everything) for the README's loss; compared by the gradient rule.
template <Scalar T, backend::Backend B>
void check_gradients_of(const AECase& c, const std::string& suffix, double rtol, double atol_global,
                        const std::string& label) {
  const json& gi = c.info.at("gradient");
  const double G = gi.at("global_max_abs_grad").get<double>();
  const Tensor<T> x = input<T>(c, "sample");
  std::map<std::string, Tensor<double>> grads;  // "sample" or parameter name -> gradient
  Parameters<T>* params = nullptr;
  double loss = 0;
  const auto run_model = [&](auto& m) {
    m.set_mode(nn::Mode::Training);
    m.parameters().zero_grad();
    params = &m.parameters();
    ConstTensorView<T> dx;
    if constexpr (std::is_same_v<std::decay_t<decltype(m)>, nn::VQModel<T, B>>) {
      const ConstTensorView<T> y = m.forward(x.cview());
      double recon = 0;
      for (index_t i = 0; i < y.numel(); ++i) recon += static_cast<double>(y[i]) * static_cast<double>(y[i]);
      recon /= static_cast<double>(y.numel());
      loss = recon + static_cast<double>(m.quantizer().commit_loss());
      Tensor<T> dy(y.shape());
      for (index_t i = 0; i < y.numel(); ++i) dy[i] = T{2} * y[i] / static_cast<T>(y.numel());
      dx = m.backward(dy.cview(), T{1});
    } else {
      auto& post = m.encode(x.cview());
      const ConstTensorView<T> kl = post.kl();
      double klm = 0;
      for (index_t i = 0; i < kl.numel(); ++i) klm += static_cast<double>(kl[i]);
      klm /= static_cast<double>(kl.numel());
      const ConstTensorView<T> y = m.decode(post.mode());
      double recon = 0;
      for (index_t i = 0; i < y.numel(); ++i) recon += static_cast<double>(y[i]) * static_cast<double>(y[i]);
      recon /= static_cast<double>(y.numel());
      loss = recon + 0.01 * klm;
      Tensor<T> dy(y.shape()), dkl(kl.shape());
      for (index_t i = 0; i < y.numel(); ++i) dy[i] = T{2} * y[i] / static_cast<T>(y.numel());
      for (index_t i = 0; i < kl.numel(); ++i) dkl[i] = static_cast<T>(0.01 / static_cast<double>(kl.numel()));
      dx = m.backward(dy.cview(), dkl.cview());
    }
    Tensor<double> gx(dx.shape());
    std::copy(dx.begin(), dx.end(), gx.begin());
    grads.insert_or_assign("sample", std::move(gx));
  };
  if (c.model == "VQModel") {
    auto m = load_model<T, B, nn::VQModel<T, B>>(c, nn::Numerics::Exact);
    run_model(m);
    for (const auto& p : m.parameters().infos()) {
      Tensor<double> g(p.shape);
      const auto v = m.parameters().grad(m.parameters().id(p.name));
      std::copy(v.begin(), v.end(), g.begin());
      grads.insert_or_assign(p.name, std::move(g));
    }
  } else {
    auto m = load_model<T, B, nn::AutoencoderKL<T, B>>(c, nn::Numerics::Exact);
    run_model(m);
    for (const auto& p : m.parameters().infos()) {
      Tensor<double> g(p.shape);
      const auto v = m.parameters().grad(m.parameters().id(p.name));
      std::copy(v.begin(), v.end(), g.begin());
      grads.insert_or_assign(p.name, std::move(g));
    }
  }
  (void)params;
  {
    const double ref = c.grad->get<double>("loss" + suffix)[0];
    INFO(c.name << " " << label << ": loss " << loss << " vs " << ref);
    CHECK(std::abs(loss - ref) <= rtol * std::abs(ref));
  }
  std::size_t checked = 0;
  for (const auto& [name, g] : grads) {
    const std::string stored = "grad/" + name + suffix;
    INFO(c.name << " " << label << ": " << stored);
    REQUIRE(c.grad->contains(stored));
    const Tensor<double> ref = c.grad->get<double>(stored);
    double ref_max = 0;
    for (index_t i = 0; i < ref.numel(); ++i) ref_max = std::max(ref_max, std::abs(ref[i]));
    const double allowed = rtol * ref_max + atol_global * G;
    const Deviation d = deviation(g.cview(), ref.cview(), allowed, 0.0);
    report().add(std::string("gradients ") + (suffix.empty() ? "float32" : suffix.substr(1)), d);
    INFO("max |g - ref| = " << d.max_abs << " (allowed " << allowed << ")");
    CHECK(g.shape() == ref.shape());
    CHECK(d.ok());
    ++checked;
  }
  // Every stored gradient was computed.
  std::size_t stored = 0;
  for (const auto& [k, info] : c.grad->tensors())
    if (k.rfind("grad/", 0) == 0 && k.size() > suffix.size() &&
        k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        (suffix.empty() ? k.find("_f64") == std::string::npos : true) &&
        (suffix == "_f64" ? k.find("_f64_exact") == std::string::npos : true))
      ++stored;
  CHECK(stored == checked);
}

template <backend::Backend B>
void check_gradients(const std::string& backend_name) {
  for (const auto& c : load_cases()) {
    if (!c.grad) continue;
    check_gradients_of<float, B>(c, "", 1e-3, 1e-6, backend_name + " float");
    check_gradients_of<double, B>(c, "_f64_exact", 1e-9, 1e-12, backend_name + " double");
  }
}

}  // namespace

TEST_CASE("autoencoder golden: forward, posterior, quantizer vs diffusers (Reference)", "[golden]") {
  check_forward<backend::Reference>("Reference");
}
TEST_CASE("autoencoder golden: gradients vs diffusers (Reference)", "[golden]") {
  check_gradients<backend::Reference>("Reference");
}
#ifdef DDPM_TEST_HAVE_EIGEN
TEST_CASE("autoencoder golden: forward, posterior, quantizer vs diffusers (Eigen)", "[golden]") {
  check_forward<backend::Cpu>("Eigen");
}
TEST_CASE("autoencoder golden: gradients vs diffusers (Eigen)", "[golden]") {
  check_gradients<backend::Cpu>("Eigen");
}
#endif

TEST_CASE("autoencoder golden: published configs build diffusers' names, shapes and counts", "[golden]") {
  const auto g = load_kind("autoencoder");
  if (!g) return;
  if (!g->doc.contains("published")) return;
  for (const auto& p : g->doc["published"]) {
    const fs::path dir = g->root / p.at("dir").get<std::string>();
    INFO(dir);
    const json shapes = load_json(dir / "state_dict_shapes.json");
    const json resolved = load_json(dir / "config.resolved.json");
    std::map<std::string, std::vector<index_t>> ours;
    std::vector<std::string> order;
    index_t count = 0;
    json written;
    const auto collect = [&](const auto& params) {
      for (const auto& info : params.infos()) {
        ours[info.name] = std::vector<index_t>(info.shape.begin(), info.shape.end());
        order.push_back(info.name);
      }
      count = params.numel();
    };
    if (p.at("model") == "VQModel") {
      const auto cfg = io::read_vq_model_config(dir / "config.json");
      nn::VQModel<float, backend::Reference> m(cfg);
      collect(m.parameters());
      written = io::vq_model_config_to_json(cfg);
    } else {
      REQUIRE(p.at("model") == "AutoencoderKL");
      const auto cfg = io::read_autoencoder_kl_config(dir / "config.json");
      nn::AutoencoderKL<float, backend::Reference> m(cfg);
      collect(m.parameters());
      written = io::autoencoder_kl_config_to_json(cfg);
    }
    CHECK(count == p.at("num_parameters").get<index_t>());
    CHECK(count == shapes.at("num_parameters").get<index_t>());
    CHECK(ours.size() == p.at("num_state_dict_entries").get<std::size_t>());
    std::size_t matched = 0;
    for (const auto& e : shapes.at("state_dict")) {
      const std::string name = e.at(0).get<std::string>();
      const auto want = e.at(1).get<std::vector<index_t>>();
      INFO(name);
      const auto it = ours.find(name);
      REQUIRE(it != ours.end());
      CHECK(it->second == want);
      ++matched;
    }
    CHECK(matched == ours.size());
    // The class defaults applied to the old config give what diffusers resolves.
    for (auto& [k, v] : resolved.items()) {
      if (k == "_diffusers_version") continue;
      INFO("config.resolved.json key " << k);
      REQUIRE(written.contains(k));
      CHECK(written[k] == v);
    }
    CHECK(written.size() == resolved.size());
    report();  // the summary counts only the cases
  }
}
