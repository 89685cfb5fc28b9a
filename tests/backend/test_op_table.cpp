// The op table (backend/ops.hpp): names, the FLOP counts the bench quotes
// GFLOP/s on, and the backends generated from it.
#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <string_view>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/flop_counter.hpp"
#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/profiled.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/upsample.hpp"

using namespace ddpm;
using backend::Conv2dParams;
using backend::FlopCounter;

namespace {
template <class... Ops>
std::set<std::string_view> name_set(ops::list<Ops...>) {
  return {Ops::name...};
}
}  // namespace

TEST_CASE("op table: every op has a unique name, its index and name agree", "[backend]") {
  const auto names = name_set(ops::all{});
  CHECK(names.size() == ops::all::size);
  for (auto n : names) CHECK(!n.empty());
  STATIC_REQUIRE(ops::index_of<ops::gemm_t, ops::all>::value == 0);
  CHECK(ops::names<ops::all>::value[ops::index_of<ops::upsample_nearest2x_forward_t, ops::all>::value] ==
        "upsample_nearest2x_forward");
  CHECK(ops::names<ops::all>::value[ops::index_of<ops::attention_backward_t, ops::all>::value] ==
        "attention_backward");
  STATIC_REQUIRE(backend::Backend<backend::Reference>);
  STATIC_REQUIRE(backend::Backend<backend::Cpu>);
  STATIC_REQUIRE(backend::Backend<backend::Profiled<backend::Cpu>>);
  STATIC_REQUIRE(backend::Backend<FlopCounter>);
}

TEST_CASE("op table: FLOP counts are 2 x multiply-adds of the contractions", "[backend]") {
  Tensor<float> x({2, 3, 8, 8}), w({4, 3, 3, 3}), b({4}), y({2, 4, 8, 8});
  const auto p = Conv2dParams::symmetric(1, 1);
  const double conv = 2.0 * 2 * 4 * 8 * 8 * (3 * 3 * 3);  // N Co OH OW x Ci KH KW
  FlopCounter::reset();
  FlopCounter::run(ops::conv2d_forward, x, w, b, p, y);
  CHECK(FlopCounter::flops() == conv);

  // Backward: the input gradient and the weight gradient each cost a forward.
  Tensor<float> dx(x.shape()), dw(w.shape()), db(b.shape());
  FlopCounter::reset();
  FlopCounter::run(ops::conv2d_backward, x, w, y, p, dx, dw, db);
  CHECK(FlopCounter::flops() == 2 * conv);
  FlopCounter::reset();
  FlopCounter::run(ops::conv2d_backward, x, w, y, p, {}, dw, db);
  CHECK(FlopCounter::flops() == conv);

  // Stride 2, padding only bottom and right (diffusers' downsample_padding = 0): 4 x 4 outputs.
  FlopCounter::reset();
  FlopCounter::run(ops::conv2d_forward, x, w, {}, Conv2dParams{2, 0, 1, 0, 1}, Tensor<float>({2, 4, 4, 4}).view());
  CHECK(FlopCounter::flops() == 2.0 * 2 * 4 * 4 * 4 * 27);

  Tensor<double> xl({5, 7, 6}), wl({9, 6}), yl({5, 7, 9});
  FlopCounter::reset();
  FlopCounter::run(ops::linear_forward, xl, wl, {}, yl);
  CHECK(FlopCounter::flops() == 2.0 * 35 * 54);
  FlopCounter::reset();
  Tensor<double> dxl(xl.shape()), dwl(wl.shape());
  FlopCounter::run(ops::linear_backward, xl, wl, yl, dxl, dwl, {});
  CHECK(FlopCounter::flops() == 2 * 2.0 * 35 * 54);

  FlopCounter::reset();
  FlopCounter::run(ops::gemm, backend::Trans::No, backend::Trans::Yes, 3, 4, 5, 1.0f, x.data(), 5, x.data(), 5, 0.0f,
                   y.data(), 4);
  CHECK(FlopCounter::flops() == 2.0 * 3 * 4 * 5);

  // Attention, N = 2, L = 16 tokens, C = 8: q k^T and probs v.
  Tensor<float> q({2, 16, 8}), probs({2, 2, 16, 16}), out(q.shape());
  FlopCounter::reset();
  FlopCounter::run(ops::attention_forward, q, q, q, 2, 0.5f, out, probs);
  CHECK(FlopCounter::flops() == 2 * (2.0 * 2 * 16 * 16 * 8));
  FlopCounter::reset();
  FlopCounter::run(ops::attention_backward, q, q, q, probs, 2, 0.5f, out, out, out, out);
  CHECK(FlopCounter::flops() == 4 * (2.0 * 2 * 16 * 16 * 8));

  // Memory-bound ops count no flops.
  FlopCounter::reset();
  FlopCounter::run(ops::add, x, x, 1.0f, x);
  FlopCounter::run(ops::silu_forward, x, x);
  FlopCounter::run(ops::upsample_nearest2x_forward, x, Tensor<float>({2, 3, 16, 16}).view());
  CHECK(FlopCounter::flops() == 0);
}

TEST_CASE("op table: Profiled reports each op under its table name", "[backend]") {
  using P = backend::Profiled<backend::Reference>;
  Parameters<float> params;
  nn::Upsample2D<float, P> up(params, "up", 3, false);
  up.set_mode(nn::Mode::Training);
  Tensor<float> x({1, 3, 4, 4}, 1.0f), dy({1, 3, 8, 8}, 1.0f);
  P::reset();
  up.forward(x);
  up.backward(dy);
  const auto r = P::report();
  std::set<std::string_view> seen;
  for (const auto& op : r) seen.insert(op.name);
  CHECK(seen == std::set<std::string_view>{"upsample_nearest2x_forward", "upsample_nearest2x_backward"});
}
