#pragma once
// Shared by the golden tests of the diffusion math and the samplers: building a
// case's sampler from its `config` through io/scheduler_config.hpp, and
// reading tolerances.
#include "support/golden.hpp"

#include <cmath>
#include <optional>
#include <string>

#include "ddpm/io/scheduler_config.hpp"
#include "ddpm/sampling/any_sampler.hpp"

namespace ddpm::test {

inline std::string case_name(const json& c) { return c.value("name", std::string("?")); }

// The case's scheduler config, with its step keyword arguments applied: the
// `step_kwargs` object and, for step cases, the top-level eta /
// use_clipped_model_output fields.
inline SamplerConfig case_config(const json& c) {
  if (!c.contains("config")) FAIL("case " << case_name(c) << " has no config");
  SamplerConfig cfg = io::scheduler_config_from_json(c["config"], "case " + case_name(c) + " config");
  json kwargs = c.contains("step_kwargs") && !c["step_kwargs"].is_null() ? c["step_kwargs"] : json::object();
  for (const char* k : {"eta", "use_clipped_model_output"})
    if (c.contains(k) && !c[k].is_null()) kwargs[k] = c[k];
  io::apply_step_kwargs(cfg, kwargs, "case " + case_name(c) + " step kwargs");
  return cfg;
}

template <Scalar T>
constexpr const char* precision_key() {
  return std::is_same_v<T, float> ? "float32" : "float64";
}

// The reference tensor for T: the plain role for float, role + "_f64" for double.
template <Scalar T>
std::string ref_role(const std::string& role) {
  return std::is_same_v<T, float> ? role : role + "_f64";
}

// tolerance[quantity][precision][field] (steps, forward process) or
// tolerance[precision][quantity][field] (schedules); fails when absent.
template <Scalar T>
double tolerance_of(const json& c, const std::string& quantity, const std::string& field) {
  const json& tol = c.at("tolerance");
  const char* p = precision_key<T>();
  if (tol.contains(quantity) && tol[quantity].contains(p) && tol[quantity][p].contains(field))
    return tol[quantity][p][field].get<double>();
  if (tol.contains(p) && tol[p].contains(quantity) && tol[p][quantity].contains(field))
    return tol[p][quantity][field].get<double>();
  if (tol.contains(p) && tol[p].contains(field)) return tol[p][field].get<double>();
  FAIL("case " << case_name(c) << ": no tolerance " << quantity << "/" << p << "/" << field);
  return 0;
}

// Compares with a reference that may hold NaN where diffusers' float64 run
// takes the square root of a rounding-level negative number (DDIM, eta = 1,
// at a zero-SNR timestep: README). There the library clamps at 0 and gives a
// finite value; NaN reference elements are skipped, and our value must be
// finite. Returns the deviation over the other elements.
template <Scalar T, class R>
Deviation deviation_skipping_nan_ref(ConstTensorView<T> x, ConstTensorView<R> ref, double atol, double rtol,
                                     int& nan_refs) {
  if (x.numel() != ref.numel()) return deviation(x, ref, atol, rtol);
  Tensor<R> r = Tensor<R>::copy_of(ref);
  for (index_t i = 0; i < r.numel(); ++i) {
    if (!std::isnan(r[i])) continue;
    ++nan_refs;
    CHECK(std::isfinite(x[i]));
    r[i] = static_cast<R>(x[i]);
  }
  return deviation(x, r.cview(), atol, rtol);
}

}  // namespace ddpm::test
