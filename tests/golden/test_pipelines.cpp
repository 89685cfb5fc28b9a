// Latent pipelines against diffusers v0.40, for every case of the golden
// `pipelines` kind (README: tests/data/golden-more/pipelines.README.md), on
// both CPU backends, in float and double. Data driven: the cases come from
// pipelines/index.json, each case's folder is loaded as a pipeline folder,
// and every tensor case.json lists must be an input or be compared (a listed
// tensor this test does not compute fails).
//
//   float:           plain tensors at tolerance.*.float32
//   double (Exact):  *_f64_exact at tolerance.*.float64_exact (pure double)
//   (*_f64, diffusers' float32 embedding and softmax in a double model, is not
//   compared: our float32 softmax sums in another order, which used up to 0.8 of
//   the float64 tolerance on the visible cases; the README's float64 reference is _f64_exact)
//   per step (latents, model_inputs, model_outputs): max|x[i] - ref[i]| <= rtol_step max|ref[i]|
//   final_latents, decoder_input (and x_T, at rtol_step): max|x - ref| <= rtol max|ref|
//   decoded, image, quantized: |x - ref| <= atol elementwise; code_indices exactly
//   timesteps exactly; every stored step_noise tensor replayed, in order, and all of them used
// Also: save -> load round trip (model_index.json byte for byte as diffusers
// writes it, same image bit for bit), and bad pipeline folders (one-line errors).
#include "support/golden.hpp"

#include <cstdio>
#include <fstream>
#include <set>

#include "ddpm/backend/reference.hpp"
#include "ddpm/io/pipeline.hpp"
#include "ddpm/pipelines/latent_pipeline.hpp"
#if __has_include("ddpm/backend/cpu.hpp")
#include "ddpm/backend/cpu.hpp"
#define DDPM_TEST_HAVE_CPU 1
#endif

#ifdef DDPM_TEST_HAVE_CPU
using FastBackend = ddpm::backend::Cpu;
#else
using FastBackend = ddpm::backend::Reference;
#endif

using namespace ddpm;
using namespace ddpm::test;

namespace {

struct PipeCase {
  std::string name, pipeline;
  fs::path dir;
  json info;  // case.json
  io::SafeTensors io;
};

std::vector<PipeCase> load_cases() {
  std::vector<PipeCase> out;
  const auto g = load_kind("pipelines");
  if (!g) return out;
  for (const auto& c : g->cases()) {
    const fs::path dir = g->case_dir(c);
    out.push_back(PipeCase{c.at("name").get<std::string>(), c.at("pipeline").get<std::string>(), dir,
                           load_json(dir / "case.json"), io::SafeTensors::load(dir / "io.safetensors")});
  }
  if (out.empty()) FAIL("pipelines: no cases");
  return out;
}

const std::vector<PipeCase>& cases() {
  static const std::vector<PipeCase> c = load_cases();
  return c;
}

DeviationReport& report() {
  static DeviationReport rep("pipelines");
  return rep;
}

// The tensors a run produced, by their stored names (without suffix); the
// per-step ones stacked [steps, ...] as stored.
template <class T>
struct Run {
  std::map<std::string, Tensor<T>> tensors;
  std::vector<std::int64_t> code_indices;
  std::vector<double> timesteps;
  index_t noise_drawn = 0, noise_stored = 0;
};

template <class T>
Tensor<T> stack(const std::vector<Tensor<T>>& xs) {
  REQUIRE(!xs.empty());
  std::vector<index_t> dims{static_cast<index_t>(xs.size())};
  for (int d = 0; d < xs[0].rank(); ++d) dims.push_back(xs[0].dim(d));
  Tensor<T> out(Shape(dims.begin(), dims.end()));
  index_t at = 0;
  for (const auto& x : xs) at = static_cast<index_t>(std::copy(x.begin(), x.end(), out.begin() + at) - out.begin());
  return out;
}

template <Scalar T, backend::Backend B>
Run<T> run_case(const PipeCase& c, nn::Numerics numerics) {
  io::DiffusersLoadOptions opt;
  opt.numerics = numerics;
  auto p = io::load_latent_pipeline<T, B>(c.dir, opt);
  REQUIRE(std::string(p.class_name()) == c.pipeline);

  Run<T> r;
  const Tensor<T> noise = c.io.get<T>("initial_noise");
  // The stored step noise, replayed in order.
  Tensor<T> step_noise;
  if (c.io.contains("step_noise")) {
    step_noise = c.io.get<T>("step_noise");
    r.noise_stored = step_noise.dim(0);
  }
  const NoiseSource<T> source(typename NoiseSource<T>::Fill([&](TensorView<T> out) {
    INFO(c.name << ": step noise draw " << r.noise_drawn);
    REQUIRE(r.noise_drawn < r.noise_stored);
    const index_t n = out.numel();
    REQUIRE(step_noise.numel() == r.noise_stored * n);
    std::copy_n(step_noise.begin() + r.noise_drawn * n, n, out.begin());
    ++r.noise_drawn;
  }));

  LatentPipelineCall<T> call;
  if (c.info.contains("eta") && !c.info["eta"].is_null()) call.eta = c.info["eta"].get<double>();
  Tensor<T> low_res;
  if (c.io.contains("low_res_image")) {
    low_res = c.io.get<T>("low_res_image");
    call.low_res_image = low_res.cview();
  }
  std::vector<Tensor<T>> inputs, outputs, latents;
  call.on_step = [&](const LatentPipelineStep<T>& s) {
    CHECK(s.step == static_cast<index_t>(r.timesteps.size()));
    r.timesteps.push_back(s.timestep);
    inputs.push_back(Tensor<T>::copy_of(s.model_input));
    outputs.push_back(Tensor<T>::copy_of(s.model_output));
    latents.push_back(Tensor<T>::copy_of(s.latents));
  };
  const index_t steps = c.info.at("num_inference_steps").get<index_t>();
  auto out = p(steps, noise.cview(), source, call);

  r.tensors.emplace("x_T", std::move(out.initial_latents));
  r.tensors.emplace("model_inputs", stack(inputs));
  r.tensors.emplace("model_outputs", stack(outputs));
  r.tensors.emplace("latents", stack(latents));
  r.tensors.emplace("final_latents", std::move(out.final_latents));
  r.tensors.emplace("decoder_input", std::move(out.decoder_input));
  r.tensors.emplace("decoded", std::move(out.decoded));
  r.tensors.emplace("image", std::move(out.image));
  if (p.is_vq()) {
    r.tensors.emplace("quantized", std::move(out.quantized));
    r.code_indices = std::move(out.code_indices);
  }
  return r;
}

const std::set<std::string>& inputs_of_the_run() {
  static const std::set<std::string> s{"initial_noise", "low_res_image", "step_noise", "timesteps"};
  return s;
}

// Every computed tensor against io[<name><suffix>] under the case's
// tolerance column `column` (float32, float64, float64_exact).
template <class T>
void compare(const PipeCase& c, const Run<T>& r, const std::string& column, const std::string& suffix,
             const std::string& label) {
  const json& tol = c.info.at("tolerance");
  // Every tensor the case lists with this suffix is an input or is compared here.
  for (auto& [stored, meta] : c.info.at("tensors").items()) {
    std::string base = stored;
    if (!suffix.empty()) {
      if (!stored.ends_with(suffix)) continue;
      base = stored.substr(0, stored.size() - suffix.size());
    } else if (stored.ends_with("_f64") || stored.ends_with("_f64_exact")) {
      continue;
    }
    if (inputs_of_the_run().count(base) || base == "code_indices") continue;
    INFO(c.name << " " << label << ": " << stored);
    const auto it = r.tensors.find(base);
    if (it == r.tensors.end()) FAIL("the test computes no '" << base << "' (listed in the case's tensors)");
    const Tensor<double> ref = c.io.get<double>(stored);
    REQUIRE(it->second.shape() == ref.shape());
    const bool per_step = base == "latents" || base == "model_inputs" || base == "model_outputs";
    if (per_step || base == "x_T") {
      const double rtol = tol.at("per_step").at(column).at("rtol_step").get<double>();
      const index_t steps = per_step ? ref.dim(0) : 1, n = ref.numel() / steps;
      for (index_t i = 0; i < steps; ++i) {
        double ref_max = 0;
        for (index_t k = 0; k < n; ++k) ref_max = std::max(ref_max, std::abs(ref[i * n + k]));
        const Deviation d = deviation(it->second.data() + i * n, ref.data() + i * n, n, rtol * ref_max, 0.0);
        report().add(column + " " + base + " (rel. per step)", d);
        INFO("step " << i << ": max |x - ref| = " << d.max_abs << " = " << d.max_rel << " max|ref| (allowed "
                     << rtol << " max|ref|)");
        CHECK(d.ok());
      }
    } else if (base == "final_latents" || base == "decoder_input") {
      const double rtol = tol.at(base).at(column).at("rtol").get<double>();
      double ref_max = 0;
      for (index_t k = 0; k < ref.numel(); ++k) ref_max = std::max(ref_max, std::abs(ref[k]));
      const Deviation d = deviation(it->second.cview(), ref.cview(), rtol * ref_max, 0.0);
      report().add(column + " " + base + " (rel.)", d);
      INFO("max |x - ref| = " << d.max_abs << " = " << d.max_rel << " max|ref| (allowed " << rtol << " max|ref|)");
      CHECK(d.ok());
    } else {
      const double atol = tol.at(base).at(column).at("atol").get<double>();
      const Deviation d = deviation(it->second.cview(), ref.cview(), atol, 0.0);
      report().add(column + " " + base, d);
      INFO("max |x - ref| = " << d.max_abs << " (allowed " << atol << "), worst at " << d.worst_index);
      CHECK(d.ok());
    }
  }
  // Timesteps exactly, and every stored noise tensor used.
  const Tensor<double> ts = c.io.get<double>("timesteps");
  INFO(c.name << " " << label);
  REQUIRE(static_cast<index_t>(r.timesteps.size()) == ts.numel());
  for (index_t i = 0; i < ts.numel(); ++i) CHECK(r.timesteps[static_cast<std::size_t>(i)] == ts[i]);
  CHECK(r.noise_drawn == r.noise_stored);
  if (c.io.contains("code_indices")) {
    const auto ref = c.io.get_int64("code_indices");
    REQUIRE(r.code_indices.size() == ref.size());
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) wrong += r.code_indices[i] != ref[i];
    CHECK(wrong == 0);
  } else {
    CHECK(r.code_indices.empty());
  }
}

template <backend::Backend B>
void check_backend(const std::string& backend_name) {
  for (const auto& c : cases()) {
    compare(c, run_case<float, B>(c, nn::Numerics::Diffusers), "float32", "", backend_name + " float");
    compare(c, run_case<double, B>(c, nn::Numerics::Exact), "float64_exact", "_f64_exact",
            backend_name + " double exact");
    if (backend_name == "Reference") report().count_case();
  }
}

// A scratch copy of a case folder (writable), under the test's tmp folder.
fs::path scratch_copy(const PipeCase& c, const std::string& tag) {
  const fs::path dst = fs::path(DDPM_TEST_TMP_DIR) / "pipelines" / (c.name + "_" + tag);
  fs::remove_all(dst);
  fs::create_directories(dst.parent_path());
  fs::copy(c.dir, dst, fs::copy_options::recursive);
  for (const auto& e : fs::recursive_directory_iterator(dst))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  fs::permissions(dst, fs::perms::owner_write, fs::perm_options::add);
  return dst;
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}

// The error text of loading `dir` (empty when it loads).
std::string load_error(const fs::path& dir) {
  try {
    (void)io::load_latent_pipeline<float, backend::Reference>(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const PipeCase& first_case_of(const std::string& pipeline) {
  for (const auto& c : cases())
    if (c.pipeline == pipeline) return c;
  FAIL("no case of " << pipeline);
  return cases().front();
}

}  // namespace

TEST_CASE("pipelines: every golden case, Reference backend, float and double", "[golden][pipelines]") {
  check_backend<backend::Reference>("Reference");
}

#ifdef DDPM_TEST_HAVE_CPU
TEST_CASE("pipelines: every golden case, Cpu backend, float and double", "[golden][pipelines]") {
  check_backend<backend::Cpu>("Cpu");
}
#endif

TEST_CASE("pipelines: model_index.json reads and writes as diffusers does", "[golden][pipelines]") {
  for (const auto& c : cases()) {
    INFO(c.name);
    const fs::path file = c.dir / io::kModelIndexFile;
    const io::ModelIndex m = io::read_model_index(file);
    CHECK(m.class_name == c.pipeline);
    CHECK(m.diffusers_version == "0.40.0");
    for (auto& [name, cls] : c.info.at("components").items()) {
      REQUIRE(m.components.count(name) == 1);
      REQUIRE(m.components.at(name).has_value());
      CHECK(m.components.at(name)->library == "diffusers");
      CHECK(m.components.at(name)->class_name == cls.get<std::string>());
    }
    CHECK(m.components.size() == c.info.at("components").size());
    // diffusers' to_json_string: sorted keys, 2-space indent, newline; byte for byte.
    CHECK(io::dump_model_index(m) == io::read_text_file(file));
  }
  // Metadata keys are skipped; [null, null] is an unset optional component;
  // a scalar is an __init__ argument.
  const auto m = io::parse_model_index(json::parse(R"({"_class_name": "LDMPipeline", "_name_or_path": "x", )"
                                                   R"("extra": [null, null], "requires_safety_checker": true})"),
                                       "m.json");
  CHECK(m.diffusers_version.empty());
  REQUIRE(m.components.size() == 1);
  CHECK(!m.components.at("extra").has_value());
  REQUIRE(m.arguments.size() == 1);
  CHECK(m.arguments.at("requires_safety_checker") == json(true));
  CHECK(io::dump_model_index(m) ==
        "{\n  \"_class_name\": \"LDMPipeline\",\n  \"extra\": [\n    null,\n    null\n  ],\n"
        "  \"requires_safety_checker\": true\n}\n");
  CHECK(io::parse_model_index(io::model_index_to_json(m)) == m);
}

TEST_CASE("pipelines: save -> load gives the same folder and the same image", "[golden][pipelines]") {
  for (const auto& c : cases()) {
    INFO(c.name);
    auto p = io::load_latent_pipeline<float, FastBackend>(c.dir);
    const fs::path out = fs::path(DDPM_TEST_TMP_DIR) / "pipelines" / ("saved_" + c.name);
    fs::remove_all(out);
    fs::create_directories(out.parent_path());
    io::save_latent_pipeline(p, out);
    io::save_latent_pipeline(p, out);  // over an existing folder: replaced
    CHECK(io::read_text_file(out / io::kModelIndexFile) == io::read_text_file(c.dir / io::kModelIndexFile));
    for (const auto& e : fs::directory_iterator(out.parent_path()))  // no temporary or retired folder left
      CHECK(!e.path().filename().string().starts_with(".saved_" + c.name));
    auto q = io::load_latent_pipeline<float, FastBackend>(out);
    CHECK(q.kind() == p.kind());
    CHECK(io::scheduler_config_to_json(q.scheduler()) == io::scheduler_config_to_json(p.scheduler()));
    CHECK(io::read_text_file(out / "unet" / io::kDiffusersConfigFile) ==
          io::read_text_file(c.dir / "unet" / io::kDiffusersConfigFile));
    // The same weights: the same image, bit for bit.
    const Tensor<float> noise = c.io.get<float>("initial_noise");
    Tensor<float> low_res, sn;
    LatentPipelineCall<float> call;
    if (c.io.contains("low_res_image")) {
      low_res = c.io.get<float>("low_res_image");
      call.low_res_image = low_res.cview();
    }
    if (c.info.contains("eta") && !c.info["eta"].is_null()) call.eta = c.info["eta"].get<double>();
    const index_t steps = c.info.at("num_inference_steps").get<index_t>();
    Rng r1(7), r2(7);
    const auto a = p(steps, noise.cview(), NoiseSource<float>(r1), call);
    const auto b = q(steps, noise.cview(), NoiseSource<float>(r2), call);
    REQUIRE(a.image.shape() == b.image.shape());
    CHECK(std::equal(a.image.begin(), a.image.end(), b.image.begin()));
    CHECK(a.code_indices == b.code_indices);
  }
}

TEST_CASE("pipelines: bad pipeline folders are one-line errors naming file and key", "[golden][pipelines]") {
  const PipeCase& ldm = first_case_of("LDMPipeline");
  const auto expect = [](const fs::path& dir, const std::string& text) {
    const std::string e = load_error(dir);
    INFO(e);
    CHECK(e.find('\n') == std::string::npos);
    CHECK(e == text);
  };
  SECTION("missing component folder") {
    const fs::path d = scratch_copy(ldm, "no_vqvae");
    fs::remove_all(d / "vqvae");
    expect(d, (d / "vqvae").string() + ": folder missing (" + (d / "model_index.json").string() +
                  " lists component \"vqvae\" = [\"diffusers\", \"VQModel\"])");
  }
  SECTION("component missing from model_index.json") {
    const fs::path d = scratch_copy(ldm, "no_unet_key");
    write_text(d / "model_index.json", R"({"_class_name": "LDMPipeline", "scheduler": ["diffusers", "DDIMScheduler"], )"
                                       R"("vqvae": ["diffusers", "VQModel"]})");
    expect(d, (d / "model_index.json").string() +
                  ": key \"unet\" is missing: LDMPipeline needs [\"diffusers\", \"UNet2DModel\"]");
  }
  SECTION("component of the wrong class") {
    const fs::path d = scratch_copy(ldm, "wrong_class");
    write_text(d / "model_index.json", R"({"_class_name": "LDMPipeline", "scheduler": ["diffusers", "DDIMScheduler"], )"
                                       R"("unet": ["diffusers", "UNet2DModel"], )"
                                       R"("vqvae": ["diffusers", "AutoencoderKL"]})");
    expect(d, (d / "model_index.json").string() +
                  ": key \"vqvae\" = [\"diffusers\", \"AutoencoderKL\"]: expected [\"diffusers\", \"VQModel\"]");
  }
  SECTION("unknown pipeline class") {
    const fs::path d = scratch_copy(ldm, "wrong_pipeline");
    write_text(d / "model_index.json",
               R"({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DModel"]})");
    expect(d, (d / "model_index.json").string() + ": key \"_class_name\" = \"StableDiffusionPipeline\": expected " +
                  latent_pipeline_class_names_text());
  }
  SECTION("unknown component") {
    const fs::path d = scratch_copy(ldm, "extra_component");
    write_text(d / "model_index.json", R"({"_class_name": "LDMPipeline", "bert": ["transformers", "BertModel"], )"
                                       R"("scheduler": ["diffusers", "DDIMScheduler"], "unet": ["diffusers", )"
                                       R"("UNet2DModel"], "vqvae": ["diffusers", "VQModel"]})");
    expect(d, (d / "model_index.json").string() +
                  ": key \"bert\" = [\"transformers\", \"BertModel\"]: not a component of LDMPipeline (expected "
                  "scheduler, unet and vqvae)");
  }
  SECTION("malformed model_index.json: a component that is not [library, class]") {
    const fs::path d = scratch_copy(ldm, "bad_entry");
    write_text(d / "model_index.json", R"({"_class_name": "LDMPipeline", "unet": ["diffusers", 3]})");
    expect(d, (d / "model_index.json").string() +
                  ": key \"unet\" = [\"diffusers\",3]: expected a component [library, class] such as "
                  "[\"diffusers\", \"UNet2DModel\"], [null, null] or a scalar pipeline argument");
  }
  SECTION("a component given as a plain string") {
    const fs::path d = scratch_copy(ldm, "string_entry");
    write_text(d / "model_index.json",
               R"({"_class_name": "LDMPipeline", "scheduler": ["diffusers", "DDIMScheduler"], )"
               R"("unet": "UNet2DModel", "vqvae": ["diffusers", "VQModel"]})");
    expect(d, (d / "model_index.json").string() +
                  ": key \"unet\" = \"UNet2DModel\": expected [\"diffusers\", \"UNet2DModel\"]");
  }
  SECTION("a pipeline argument the class does not take") {
    const fs::path d = scratch_copy(ldm, "argument");
    write_text(d / "model_index.json",
               R"({"_class_name": "LDMPipeline", "requires_safety_checker": true, )"
               R"("scheduler": ["diffusers", "DDIMScheduler"], "unet": ["diffusers", "UNet2DModel"], )"
               R"("vqvae": ["diffusers", "VQModel"]})");
    expect(d, (d / "model_index.json").string() +
                  ": key \"requires_safety_checker\" = true: not an argument of LDMPipeline (it takes none)");
  }
  SECTION("malformed model_index.json: no _class_name") {
    const fs::path d = scratch_copy(ldm, "no_class");
    write_text(d / "model_index.json", R"({"unet": ["diffusers", "UNet2DModel"]})");
    expect(d, (d / "model_index.json").string() +
                  ": key \"_class_name\" is missing: expected the pipeline's class name");
  }
  SECTION("malformed model_index.json: not JSON") {
    const fs::path d = scratch_copy(ldm, "not_json");
    write_text(d / "model_index.json", "{\"_class_name\": \"LDMPipeline\",");
    const std::string e = load_error(d);
    INFO(e);
    CHECK(e.find('\n') == std::string::npos);
    CHECK(e.starts_with((d / "model_index.json").string() + ": "));
  }
  SECTION("malformed model_index.json: not an object") {
    const fs::path d = scratch_copy(ldm, "array");
    write_text(d / "model_index.json", "[1, 2]");
    expect(d, (d / "model_index.json").string() +
                  ": expected a JSON object (a diffusers model_index.json), got [1,2]");
  }
  SECTION("no model_index.json") {
    const fs::path d = scratch_copy(ldm, "no_index");
    fs::remove(d / "model_index.json");
    expect(d, (d / "model_index.json").string() + ": file not found (expected a diffusers pipeline folder)");
  }
  SECTION("scheduler class differs from model_index.json") {
    const fs::path d = scratch_copy(ldm, "sched_mismatch");
    write_text(d / "model_index.json", R"({"_class_name": "LDMPipeline", "scheduler": ["diffusers", "DDPMScheduler"], )"
                                       R"("unet": ["diffusers", "UNet2DModel"], "vqvae": ["diffusers", "VQModel"]})");
    expect(d, (d / "scheduler" / "scheduler_config.json").string() +
                  ": key \"_class_name\" = \"DDIMScheduler\": expected \"DDPMScheduler\" (as " +
                  (d / "model_index.json").string() + " lists)");
  }
  SECTION("component config of the wrong class") {
    const fs::path d = scratch_copy(ldm, "config_class");
    json cfg = load_json(d / "vqvae" / "config.json");
    cfg["_class_name"] = "AutoencoderKL";
    write_text(d / "vqvae" / "config.json", cfg.dump(2));
    expect(d, (d / "vqvae" / "config.json").string() +
                  ": key \"_class_name\" = \"AutoencoderKL\": expected \"VQModel\"");
  }
  SECTION("latents that do not fit the decoder") {
    const fs::path d = scratch_copy(ldm, "latent_width");
    json cfg = load_json(d / "vqvae" / "config.json");
    const int latent = cfg.at("latent_channels").get<int>();
    cfg["latent_channels"] = latent + 1;
    write_text(d / "vqvae" / "config.json", cfg.dump(2));
    const int out = load_json(d / "unet" / "config.json").at("out_channels").get<int>();
    expect(d, (d / "unet" / "config.json").string() + ": key \"out_channels\" = " + std::to_string(out) +
                  ": expected " + std::to_string(latent + 1) + ", the vq_embed_dim (null: latent_channels) of " +
                  (d / "vqvae" / "config.json").string() + " (the UNet's output is the decoder's latent)");
  }
}

TEST_CASE("pipelines: latent shapes, and inputs that do not fit, are one-line errors", "[golden][pipelines]") {
  for (const auto& c : cases()) {
    INFO(c.name);
    auto p = io::load_latent_pipeline<float, FastBackend>(c.dir);
    const Tensor<float> noise = c.io.get<float>("initial_noise");
    const auto expected = c.info.at("latent_shape").get<std::vector<index_t>>();
    const Shape want(expected.begin(), expected.end());
    Tensor<float> low_res;
    if (c.io.contains("low_res_image")) low_res = c.io.get<float>("low_res_image");
    CHECK(p.latent_shape(want.dim(0), low_res.cview()) == want);
    CHECK(noise.shape() == want);
  }
  const auto error_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  {
    const PipeCase& c = first_case_of("LDMPipeline");
    auto p = io::load_latent_pipeline<float, FastBackend>(c.dir);
    const index_t C = p.latent_channels();
    const Tensor<float> wrong(Shape{1, C + 1, 8, 8});
    CHECK(error_of([&] { p(2, wrong.cview()); }) == "LDMPipeline: initial_noise must be [N, " + std::to_string(C) +
                                                        ", h, w], got " + wrong.shape().str());
    const Tensor<float> noise = c.io.get<float>("initial_noise");
    LatentPipelineCall<float> call;
    call.low_res_image = noise.cview();
    CHECK(error_of([&] { p(2, noise.cview(), {}, call); }) ==
          "LDMPipeline: takes no low-resolution image (only LDMSuperResolutionPipeline does)");
    CHECK(error_of([&] { p(0, noise.cview()); }) == "LDMPipeline: num_inference_steps must be > 0, got 0");
  }
  {
    const PipeCase& c = first_case_of("LDMSuperResolutionPipeline");
    auto p = io::load_latent_pipeline<float, FastBackend>(c.dir);
    const Tensor<float> noise = c.io.get<float>("initial_noise"), low_res = c.io.get<float>("low_res_image");
    const std::string ci = std::to_string(p.image_channels());
    CHECK(error_of([&] { p(2, noise.cview()); }) ==
          "LDMSuperResolutionPipeline: needs the low-resolution image [N, " + ci + ", h, w] in [-1, 1]");
    const Tensor<float> small(Shape{noise.dim(0), p.image_channels(), noise.dim(2) - 1, noise.dim(3)});
    LatentPipelineCall<float> call;
    call.low_res_image = small.cview();
    CHECK(error_of([&] { p(2, noise.cview(), {}, call); }) ==
          "LDMSuperResolutionPipeline: low-resolution image " + small.shape().str() + " does not fit latents " +
              noise.shape().str() + " (expected [" + std::to_string(noise.dim(0)) + ", " + ci + ", " +
              std::to_string(noise.dim(2)) + ", " + std::to_string(noise.dim(3)) + "])");
    // DDIM with eta > 0 draws noise at every step: without a noise source it stops with an error.
    call.low_res_image = low_res.cview();
    call.eta = 1.0;
    const std::string e = error_of([&] { p(2, noise.cview(), {}, call); });
    CHECK(e.find("variance noise") != std::string::npos);
    CHECK(e.find('\n') == std::string::npos);
  }
}

// LDMPipeline multiplies the initial noise by init_noise_sigma BEFORE
// set_timesteps (v0.40 lines 101-103). For DDIM (the golden cases) that is 1;
// for EulerDiscrete it is the largest sigma of the whole training schedule,
// sqrt(sigma(T - 1)^2 + 1) with leading spacing, not that of the chosen
// timesteps. Reference: the closed form of the scaled_linear schedule, in double.
TEST_CASE("pipelines: LDMPipeline reads init_noise_sigma before set_timesteps", "[golden][pipelines]") {
  const PipeCase& c = first_case_of("LDMPipeline");
  const fs::path d = scratch_copy(c, "euler");
  const json sc = c.info.at("scheduler_config");
  REQUIRE(sc.at("beta_schedule") == "scaled_linear");
  const double b0 = sc.at("beta_start").get<double>(), b1 = sc.at("beta_end").get<double>();
  const int T = sc.at("num_train_timesteps").get<int>();
  json euler = {{"_class_name", "EulerDiscreteScheduler"}, {"beta_start", b0},           {"beta_end", b1},
                {"beta_schedule", "scaled_linear"},         {"num_train_timesteps", T},  {"timestep_spacing", "leading"},
                {"steps_offset", 0}};
  write_text(d / "scheduler" / "scheduler_config.json", euler.dump(2));
  json index = load_json(d / "model_index.json");
  index["scheduler"] = {"diffusers", "EulerDiscreteScheduler"};
  write_text(d / "model_index.json", index.dump(2));

  double ac = 1;
  for (int t = 0; t < T; ++t) {
    const double s = std::sqrt(b0) + (std::sqrt(b1) - std::sqrt(b0)) * t / (T - 1);
    ac *= 1 - s * s;
  }
  const double sigma_max = std::sqrt((1 - ac) / ac), want = std::sqrt(sigma_max * sigma_max + 1);

  auto p = io::load_latent_pipeline<float, FastBackend>(d);
  const Tensor<float> noise = c.io.get<float>("initial_noise");
  const auto out = p(3, noise.cview());
  double worst = 0;
  for (index_t i = 0; i < noise.numel(); ++i)
    worst = std::max(worst, std::abs(out.initial_latents[i] - noise[i] * want) / (std::abs(noise[i]) * want));
  INFO("init_noise_sigma wanted " << want << " (sigma_max " << sigma_max << "), worst rel. error " << worst);
  CHECK(worst < 1e-4);
  // After set_timesteps(3) the largest sigma is lower: the order matters.
  auto sampler = make_sampler<double>(p.scheduler());
  set_timesteps(sampler, 3);
  const double after = std::visit([](auto& s) { return static_cast<double>(s.init_noise_sigma()); }, sampler);
  CHECK(after < 0.9 * want);
}
