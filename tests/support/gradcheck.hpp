#pragma once
// A finite-difference gradient checker for layers (double precision).
//
// The loss is L = sum(w * y) with y = forward() and a fixed random w, so
// dL/dy = w is what backward() receives. Every checked element e of an input
// or parameter is perturbed and dL/de estimated with the fourth-order central
// difference  (-L(e+2h) + 8 L(e+h) - 8 L(e-h) + L(e-2h)) / 12h,
// then compared with the analytic gradient:
//   rel = |numeric - analytic| / max(|numeric|, |analytic|, floor),
// where floor is at least the finite differences' own resolution divided by
// the tolerance: a gradient smaller than the rounding noise of L / h (e.g. the
// structurally zero gradient of attention's to_k.bias) is checked to that
// absolute resolution instead.
// Tensors larger than max_elements are checked on a random subset (always
// including their first and last element).
//
// It also checks the accumulation contract: a second forward + backward
// doubles the parameter gradients and leaves the input gradients unchanged.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/core/parameters.hpp"

namespace ddpm::test {

struct GradInput {
  std::string name;
  TensorView<double> value;                      // perturbed in place
  std::function<ConstTensorView<double>()> grad;  // the analytic gradient after backward
};

struct GradCheckOptions {
  double h = 1e-3;          // finite-difference step
  double floor = 1e-6;      // denominator floor of the relative error
  double tolerance = 1e-6;  // pass if every relative error is below this
  index_t max_elements = 48;
  std::uint64_t seed = 1234;
};

struct GradCheckResult {
  double worst = 0.0;  // worst relative error over everything checked
  std::string where;   // the tensor and element where it occurred
  index_t checked = 0;
};

namespace detail {
inline std::vector<index_t> pick_elements(index_t n, index_t max, Rng& rng) {
  std::vector<index_t> idx;
  if (n <= max) {
    for (index_t i = 0; i < n; ++i) idx.push_back(i);
    return idx;
  }
  idx.push_back(0);
  idx.push_back(n - 1);
  while (static_cast<index_t>(idx.size()) < max) idx.push_back(static_cast<index_t>(rng.uniform_int(static_cast<std::uint64_t>(n))));
  return idx;
}
}  // namespace detail

// forward(): runs the layer on the current inputs/parameters, returns y.
// backward(dy): runs the layer's backward for the last forward (accumulating
// parameter gradients, storing input gradients where inputs[i].grad() finds them).
inline GradCheckResult gradcheck(const std::string& label, const std::function<ConstTensorView<double>()>& forward,
                                 const std::function<void(ConstTensorView<double>)>& backward,
                                 std::vector<GradInput> inputs, Parameters<double>* params,
                                 GradCheckOptions opt = {}) {
  Rng rng(opt.seed, 7);
  const ConstTensorView<double> y0 = forward();
  Tensor<double> w(y0.shape());
  rng.fill_normal(w.span());
  auto loss = [&]() {
    const ConstTensorView<double> y = forward();
    REQUIRE(y.shape() == w.shape());
    double s = 0;
    for (index_t i = 0; i < y.numel(); ++i) s += w[i] * y[i];
    return s;
  };

  // Analytic gradients.
  if (params) params->zero_grad();
  forward();
  backward(w.view());
  std::vector<Tensor<double>> input_grads;
  for (auto& in : inputs) {
    const ConstTensorView<double> g = in.grad();
    INFO(label << ": gradient of input " << in.name);
    REQUIRE(g.shape() == in.value.shape());
    input_grads.push_back(Tensor<double>::copy_of(g));
  }
  std::vector<double> param_grads;
  if (params) param_grads.assign(params->grads().begin(), params->grads().end());

  // Accumulation contract.
  forward();
  backward(w.view());
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const ConstTensorView<double> g = inputs[k].grad();
    for (index_t i = 0; i < g.numel(); ++i) {
      INFO(label << ": input gradient " << inputs[k].name << "[" << i << "] changed on a second backward");
      REQUIRE(g[i] == Approx(input_grads[k][i]).margin(1e-12));
    }
  }
  if (params)
    for (std::size_t i = 0; i < param_grads.size(); ++i) {
      INFO(label << ": parameter gradients must accumulate (flat index " << i << ")");
      REQUIRE(params->grads()[i] == Approx(2 * param_grads[i]).margin(1e-12));
    }

  // Rounding noise of one loss evaluation is about a few eps * sum|w * y|.
  double labs = 0;
  {
    const ConstTensorView<double> y = forward();
    for (index_t i = 0; i < y.numel(); ++i) labs += std::abs(w[i] * y[i]);
  }
  const double noise = 16 * 2.220446049250313e-16 * labs / opt.h;
  const double floor = std::max(opt.floor, noise / opt.tolerance);

  GradCheckResult result;
  auto compare = [&](double& slot, double analytic, const std::string& where) {
    const double saved = slot, h = opt.h;
    slot = saved + 2 * h;
    const double lp2 = loss();
    slot = saved + h;
    const double lp1 = loss();
    slot = saved - h;
    const double lm1 = loss();
    slot = saved - 2 * h;
    const double lm2 = loss();
    slot = saved;
    const double numeric = (-lp2 + 8 * lp1 - 8 * lm1 + lm2) / (12 * h);
    const double rel =
        std::abs(numeric - analytic) / std::max({std::abs(numeric), std::abs(analytic), floor});
    ++result.checked;
    if (rel > opt.tolerance) {
      FAIL_CHECK(label << ": " << where << ": analytic " << analytic << " vs numeric " << numeric << " (rel "
                       << rel << ")");
    }
    if (rel >= result.worst) {
      result.worst = rel;
      result.where = where;
    }
  };

  for (std::size_t k = 0; k < inputs.size(); ++k) {
    auto& in = inputs[k];
    for (index_t i : detail::pick_elements(in.value.numel(), opt.max_elements, rng))
      compare(in.value[i], input_grads[k][i], "input " + in.name + "[" + std::to_string(i) + "]");
  }
  if (params)
    for (const auto& info : params->infos()) {
      for (index_t i : detail::pick_elements(info.numel(), opt.max_elements, rng)) {
        const index_t flat = info.offset + i;
        compare(params->values()[static_cast<std::size_t>(flat)], param_grads[static_cast<std::size_t>(flat)],
                info.name + "[" + std::to_string(i) + "]");
      }
    }
  forward();  // leave the layer's buffers as they were for the unperturbed values
  std::cout << "gradcheck " << label << ": " << result.checked << " elements, worst rel error " << result.worst
            << " at " << result.where << " (floor " << floor << ")\n";
  return result;
}

// Fills a tensor with N(0, scale^2) values.
inline void randomize(TensorView<double> t, Rng& rng, double scale = 1.0) { rng.fill_normal(t.span(), 0.0, scale); }

// The common case: a single-input layer whose parameters all live in `params`.
// Parameters are drawn from N(0, param_scale^2) and the input x of shape xs
// from N(0, 1), both from `seed`; then x and every parameter are checked.
template <class L>
GradCheckResult gradcheck_layer(const std::string& label, L& layer, Parameters<double>& params, Shape xs,
                                std::uint64_t seed, double param_scale = 1.0) {
  Rng rng(seed);
  rng.fill_normal(params.values(), 0.0, param_scale);
  Tensor<double> x(xs);
  randomize(x.view(), rng);
  ConstTensorView<double> dx;
  return gradcheck(
      label + " x" + xs.str(), [&] { return layer.forward(ConstTensorView<double>(x.view())); },
      [&](ConstTensorView<double> dy) { dx = layer.backward(dy); }, {{"x", x.view(), [&] { return dx; }}}, &params);
}

}  // namespace ddpm::test
