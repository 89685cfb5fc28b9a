// Published UNet2DModel checkpoints' configs (no weights): the config reads
// as diffusers reads it (config.resolved.json) and builds exactly diffusers'
// state_dict layout (state_dict_shapes.json): names, order, shapes, count.
#include "support/golden.hpp"

#include <set>

#include "ddpm/backend/reference.hpp"
#include "ddpm/io/unet_config_json.hpp"
#include "ddpm/nn/unet2d.hpp"
#if __has_include("ddpm/io/scheduler_config.hpp")
#include "ddpm/io/scheduler_config.hpp"
#define DDPM_TEST_HAVE_SCHEDULER_CONFIG 1
#endif

using namespace ddpm;
using namespace ddpm::test;

namespace {

fs::path case_file(const GoldenKind& g, const std::string& rel) {
  // Paths in index.json are relative to the golden folder; accept the kind's folder too.
  if (fs::exists(golden_dir() / rel)) return golden_dir() / rel;
  return g.dir / rel;
}

// The module of each parameter, in order of first appearance: the first four
// name components inside a block (down_blocks.1.attentions.0), else the first.
std::vector<std::string> module_order(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const auto& n : names) {
    std::size_t end = n.find('.');
    if (n.rfind("down_blocks.", 0) == 0 || n.rfind("up_blocks.", 0) == 0 || n.rfind("mid_block.", 0) == 0) {
      const int parts = n.rfind("mid_block.", 0) == 0 ? 3 : 4;
      end = 0;
      for (int k = 0; k < parts && end != std::string::npos; ++k) end = n.find('.', end + (k ? 1 : 0));
    }
    const std::string m = n.substr(0, end);
    if (out.empty() || out.back() != m) out.push_back(m);
  }
  return out;
}

}  // namespace

TEST_CASE("checkpoint configs: config.json reads as diffusers resolves it", "[golden]") {
  const auto g = load_kind("checkpoint_configs");
  if (!g) return;
  for (const auto& c : g->cases()) {
    const std::string name = c.at("name").get<std::string>();
    INFO("case " << name);
    const fs::path cfg_path = case_file(*g, c.at("config").get<std::string>());
    std::vector<std::string> ignored;
    nn::UNet2DConfig cfg;
    REQUIRE_NOTHROW(cfg = io::read_unet2d_config(cfg_path, &ignored));
    CHECK(ignored.empty());
    const fs::path resolved_path = cfg_path.parent_path() / "config.resolved.json";
    if (!fs::exists(resolved_path)) continue;
    const json resolved = load_json(resolved_path);
    const json mine = io::unet2d_config_to_json(cfg);
    for (auto& [key, value] : resolved.items()) {
      if (!key.empty() && key[0] == '_') continue;
      INFO("key " << key << ": diffusers " << value.dump() << ", ddpm "
                  << (mine.contains(key) ? mine[key].dump() : "(absent)"));
      REQUIRE(mine.contains(key));
      CHECK(mine[key] == value);
    }
    // And the resolved file itself parses to the same config.
    CHECK(io::unet2d_config_to_json(io::parse_unet2d_config(resolved, resolved_path.string())) == mine);
  }
}

TEST_CASE("checkpoint configs: UNet2D registers diffusers' state_dict names and shapes", "[golden]") {
  const auto g = load_kind("checkpoint_configs");
  if (!g) return;
  DeviationReport report("checkpoint_configs");
  int checked = 0;
  for (const auto& c : g->cases()) {
    const std::string name = c.at("name").get<std::string>();
    INFO("case " << name);
    const fs::path cfg_path = case_file(*g, c.at("config").get<std::string>());
    const json shapes = load_json(cfg_path.parent_path() / "state_dict_shapes.json");
    const auto cfg = io::read_unet2d_config(cfg_path);

    // Building allocates the flat buffers (zeros); 113M float parameters
    // (google/ddpm-celebahq-256) take well under a second.
    const nn::UNet2D<float, backend::Reference> model(cfg);
    const auto& infos = model.parameters().infos();

    std::vector<std::pair<std::string, std::vector<index_t>>> want;
    for (const auto& e : shapes.at("state_dict")) want.emplace_back(e.at(0).get<std::string>(), e.at(1).get<std::vector<index_t>>());
    std::set<std::string> want_names, have_names;
    for (auto& [n, s] : want) want_names.insert(n);
    for (auto& p : infos) have_names.insert(p.name);
    std::vector<std::string> missing, extra;
    for (auto& n : want_names)
      if (!have_names.count(n)) missing.push_back(n);
    for (auto& n : have_names)
      if (!want_names.count(n)) extra.push_back(n);
    INFO("missing: " << Catch::Detail::stringify(missing));
    INFO("unexpected: " << Catch::Detail::stringify(extra));
    CHECK(missing.empty());
    CHECK(extra.empty());
    CHECK(infos.size() == want.size());
    if (c.contains("num_state_dict_entries")) CHECK(infos.size() == c["num_state_dict_entries"].get<std::size_t>());

    // Shapes per name, and the same order as diffusers' state_dict.
    std::map<std::string, std::vector<index_t>> have_shape;
    for (auto& p : infos) have_shape[p.name] = p.shape.to_vector();
    int shape_mismatches = 0;
    for (auto& [n, s] : want) {
      if (!have_shape.count(n)) continue;
      if (have_shape[n] != s) {
        ++shape_mismatches;
        UNSCOPED_INFO(n << ": ddpm " << Catch::Detail::stringify(have_shape[n]) << ", diffusers "
                        << Catch::Detail::stringify(s));
      }
    }
    CHECK(shape_mismatches == 0);
    // The modules (conv_in, time_embedding, down_blocks.<i>.resnets.<j>, ...)
    // come in diffusers' order; inside one layer the order is the layer's own.
    std::vector<std::string> have_names_ordered, want_names_ordered;
    for (auto& p : infos) have_names_ordered.push_back(p.name);
    for (auto& [n, s] : want) want_names_ordered.push_back(n);
    CHECK(module_order(have_names_ordered) == module_order(want_names_ordered));
    if (have_names_ordered != want_names_ordered) {
      std::size_t i = 0;
      while (i < want_names_ordered.size() && have_names_ordered[i] == want_names_ordered[i]) ++i;
      WARN(name << ": same modules in the same order, but the parameters inside a layer are registered in "
                   "another order than diffusers' state_dict; first difference at entry "
                << i << ": ddpm '" << have_names_ordered[i] << "', diffusers '" << want_names_ordered[i] << "'");
    }

    const auto count = shapes.at("num_parameters").get<index_t>();
    CHECK(model.parameters().numel() == count);
    CHECK(model.num_parameters() == count);
    if (c.contains("num_parameters")) CHECK(model.parameters().numel() == c["num_parameters"].get<index_t>());
    ++checked;
    report.count_case();
  }
  CHECK(checked == static_cast<int>(g->cases().size()));
}

TEST_CASE("checkpoint configs: scheduler_config.json, where present, is readable", "[golden]") {
  const auto g = load_kind("checkpoint_configs");
  if (!g) return;
  for (const auto& c : g->cases()) {
    if (!c.contains("scheduler_config") || c["scheduler_config"].is_null()) continue;
    const fs::path p = case_file(*g, c["scheduler_config"].get<std::string>());
    INFO("case " << c.at("name").get<std::string>() << ": " << p);
    REQUIRE(fs::exists(p));
    const json j = load_json(p);
    CHECK(j.is_object());
#ifdef DDPM_TEST_HAVE_SCHEDULER_CONFIG
    CHECK_NOTHROW(io::read_scheduler_config(p));
#else
    WARN("io/scheduler_config.hpp is not there yet: only the JSON of " << p << " was checked");
#endif
  }
}
