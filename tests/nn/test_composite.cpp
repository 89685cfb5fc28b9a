// Composite layers (nn/composite.hpp): visit_children's order and its
// handling of optional children; init and set_mode derived from
// for_each_child reach every layer of a UNet2D and an MLPDenoiser.
#include <catch2/catch.hpp>

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/composite.hpp"
#include "ddpm/nn/mlp_denoiser.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "support/tiny_unet.hpp"

using namespace ddpm;

namespace {

struct Leaf {
  std::string name;
};

// Every layer below `layer` (itself included): f(layer) for each LayerBase.
template <class L, class F>
void each_layer(L& layer, F& f) {
  if constexpr (std::derived_from<L, nn::LayerBase>) f(static_cast<nn::LayerBase&>(layer));
  if constexpr (nn::Composite<L>) layer.for_each_child([&](auto& child) { each_layer(child, f); });
}

// Every parameter belongs to a layer that for_each_child reaches, and
// set_mode reaches every layer.
template <class Model>
void check_tree(Model& model) {
  std::set<std::string> prefixes;
  int layers = 0;
  auto collect = [&](nn::LayerBase& l) {
    prefixes.insert(l.prefix());
    ++layers;
  };
  each_layer(model, collect);
  CHECK(layers > 10);
  for (const auto& info : model.parameters().infos()) {
    const std::string owner = info.name.substr(0, info.name.rfind('.'));
    INFO(info.name);
    CHECK(prefixes.count(owner) == 1);
  }
  for (nn::Mode m : {nn::Mode::Inference, nn::Mode::Training, nn::Mode::Inference}) {
    model.set_mode(m);
    int wrong = 0;
    auto check_mode = [&](nn::LayerBase& l) { wrong += l.mode() != m; };
    each_layer(model, check_mode);
    CHECK(wrong == 0);
  }
}

}  // namespace

TEST_CASE("visit_children visits children in order and skips absent ones", "[nn]") {
  Leaf a{"a"};
  std::optional<Leaf> present{Leaf{"opt"}}, absent;
  std::unique_ptr<Leaf> owned = std::make_unique<Leaf>(Leaf{"ptr"}), null;
  std::vector<std::unique_ptr<Leaf>> list;
  list.push_back(std::make_unique<Leaf>(Leaf{"v0"}));
  list.push_back(nullptr);
  list.push_back(std::make_unique<Leaf>(Leaf{"v2"}));
  std::vector<Leaf> values{{"w0"}, {"w1"}};
  std::vector<std::string> seen;
  auto f = [&](Leaf& l) { seen.push_back(l.name); };
  nn::visit_children(f, a, absent, present, null, list, owned, values);
  CHECK(seen == std::vector<std::string>{"a", "opt", "v0", "v2", "ptr", "w0", "w1"});
}

TEST_CASE("for_each_child reaches every layer of a UNet2D and an MLPDenoiser", "[nn]") {
  nn::UNet2DConfig c = ddpm::test::tiny_unet_layout();
  c.resnet_time_scale_shift = "scale_shift";
  c.num_class_embeds = 3;
  nn::UNet2D<float, backend::Reference> unet(c);
  check_tree(unet);

  nn::MLPDenoiserConfig mc;
  mc.data_dim = 2;
  mc.cond_dim = 3;
  mc.cond_mode = nn::CondMode::Add;
  mc.hidden = 6;
  mc.depth = 5;
  mc.time_embed_dim = 8;
  nn::MLPDenoiser<float, backend::Reference> mlp(mc);
  check_tree(mlp);
}

TEST_CASE("A composite's init draws its children in for_each_child's order", "[nn]") {
  // AttentionBlock: group_norm (no draws), to_q, to_k, to_v, to_out.0.
  Parameters<double> params;
  nn::AttentionOptions opt;
  opt.channels = 4;
  opt.norm_groups = 2;
  nn::AttentionBlock<double, backend::Reference> block(params, "attn", opt);
  Rng rng(5, 6), replay(5, 6);
  block.init(rng);
  for (const char* name : {"to_q", "to_k", "to_v", "to_out.0"}) {
    const std::string p = std::string("attn.") + name;
    Tensor<double> w({4, 4}), b({4});
    nn::init_linear_default(w.view(), b.view(), 4, replay);
    INFO(p);
    const auto pw = params.value(params.id(p + ".weight")), pb = params.value(params.id(p + ".bias"));
    CHECK(std::equal(w.begin(), w.end(), pw.begin()));
    CHECK(std::equal(b.begin(), b.end(), pb.begin()));
  }
  CHECK(params.value(params.id("attn.group_norm.weight"))[0] == 1.0);
  CHECK(replay.uniform() == rng.uniform());
}
