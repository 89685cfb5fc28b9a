// backend::Profiled<B> times B's ops and changes nothing they compute.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string_view>

#include "ddpm/backend/profiled.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/resnet_block.hpp"
#include "support/random_tensor.hpp"

using namespace ddpm;
using P = backend::Profiled<backend::Reference>;

namespace {
// A ResnetBlock2D (norm, SiLU, conv, linear, 1x1 shortcut) forward and backward.
template <class B>
std::pair<Tensor<double>, std::vector<double>> run_block() {
  Parameters<double> p;
  nn::ResnetBlock2DOptions opt;
  opt.in_channels = 4;
  opt.out_channels = 6;
  opt.temb_channels = 5;
  opt.groups = 2;
  nn::ResnetBlock2D<double, B> block(p, "b", opt);
  Rng rng(3);
  block.init(rng);
  block.set_mode(nn::Mode::Training);
  const auto x = test::randn({2, 4, 5, 3}, 1), temb = test::randn({2, 5}, 2), dy = test::randn({2, 6, 5, 3}, 4);
  auto y = Tensor<double>::copy_of(block.forward(x.view(), temb.view()));
  block.backward(dy.view());
  return {std::move(y), std::vector<double>(p.grads().begin(), p.grads().end())};
}

long long calls(std::string_view op) {
  for (const auto& r : P::report())
    if (r.name == op) return r.calls;
  return 0;
}
}  // namespace

TEST_CASE("Profiled: same results as the wrapped backend, every op counted", "[backend]") {
  STATIC_REQUIRE(backend::Backend<P>);
  P::set_num_threads(3);
  CHECK(P::num_threads() == backend::Reference::num_threads());

  const auto [y_ref, g_ref] = run_block<backend::Reference>();
  P::reset();
  const auto [y, g] = run_block<P>();
  REQUIRE(y.shape() == y_ref.shape());
  CHECK(std::equal(y.span().begin(), y.span().end(), y_ref.span().begin()));  // bit for bit
  CHECK(g == g_ref);

  // conv1, conv2 and the shortcut; norm1 and norm2, each fused with its SiLU;
  // the SiLU on temb; time_emb_proj.
  CHECK(calls("conv2d_forward") == 3);
  CHECK(calls("conv2d_backward") == 3);
  CHECK(calls("group_norm_silu_forward") == 2);
  CHECK(calls("group_norm_silu_backward") == 2);
  CHECK(calls("group_norm_forward") == 0);
  CHECK(calls("silu_forward") == 1);
  CHECK(calls("silu_backward") == 1);
  CHECK(calls("linear_forward") == 1);
  CHECK(calls("linear_backward") == 1);
  CHECK(calls("add_channel_bias") == 1);  // h + temb
  CHECK(calls("channel_sum") == 1);       // its backward
  CHECK(calls("add") == 2);               // the residual, and dx = dx(main) + dx(shortcut)
  CHECK(calls("copy") == 1);  // the time embedding's gradient into the block's buffer
  // Each GroupNorm's weight = 1 at construction, then weight = 1 and bias = 0 in init().
  CHECK(calls("fill") == 6);
  CHECK(calls("attention_forward") == 0);  // ops that never ran are not listed
  const auto r = P::report();
  CHECK(r.size() == 13);
  CHECK(std::is_sorted(r.begin(), r.end(), [](const auto& a, const auto& b) { return a.seconds > b.seconds; }));
  for (const auto& op : r) CHECK(op.seconds >= 0);

  P::reset();
  CHECK(P::report().empty());
}
