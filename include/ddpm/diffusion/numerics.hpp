#pragma once
// The array semantics of NumPy and PyTorch that diffusers' schedules depend on,
// written out so that a reimplementation agrees with diffusers to the last
// bit where it can: round-half-to-even, numpy.linspace / numpy.arange (float
// step), numpy.interp, torch.linspace and torch.cumprod on CPU, and
// torch.quantile's linear interpolation.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "ddpm/core/error.hpp"

namespace ddpm::numerics {

// numpy.round: ties go to the even neighbour (1.5 -> 2, 2.5 -> 2).
inline double round_half_even(double x) { return std::nearbyint(x); }

// numpy.linspace(start, stop, num) (endpoint=True): start + i * step, with the
// last point set to `stop` exactly, as NumPy 1.24 computes it.
inline std::vector<double> np_linspace(double start, double stop, std::int64_t num) {
  require(num >= 0, "np_linspace: num must be >= 0, got ", num);
  std::vector<double> y(static_cast<std::size_t>(num));
  if (num == 0) return y;
  const double delta = stop - start;
  const auto div = static_cast<double>(num - 1);
  const double step = num > 1 ? delta / div : 0.0;
  for (std::int64_t i = 0; i < num; ++i) {
    const auto k = static_cast<std::size_t>(i);
    // NumPy falls back to i / div * delta only when step == 0.
    y[k] = (num > 1 && step == 0.0 ? static_cast<double>(i) / div * delta : static_cast<double>(i) * step) + start;
  }
  if (num > 1) y.back() = stop;
  return y;
}

// numpy.arange(start, stop, step) for a float step: length ceil((stop - start) / step),
// values start + i * delta with delta = (start + step) - start (NumPy's fill).
inline std::vector<double> np_arange(double start, double stop, double step) {
  require(step != 0.0, "np_arange: step must be non-zero");
  const double len = std::ceil((stop - start) / step);
  std::vector<double> y(len > 0 ? static_cast<std::size_t>(len) : 0);
  if (y.empty()) return y;
  y[0] = start;
  if (y.size() > 1) y[1] = start + step;
  const double delta = (start + step) - start;
  for (std::size_t i = 2; i < y.size(); ++i) y[i] = start + static_cast<double>(i) * delta;
  return y;
}

// numpy.interp(x, arange(len(fp)), fp) in double: slope * (x - xp[j]) + fp[j].
inline double np_interp_unit_grid(double x, std::span<const double> fp) {
  require(!fp.empty(), "np_interp: empty table");
  const auto n = static_cast<std::int64_t>(fp.size());
  if (x <= 0.0) return fp.front();
  if (x >= static_cast<double>(n - 1)) return fp.back();
  const auto j = static_cast<std::int64_t>(std::floor(x));
  const auto k = static_cast<std::size_t>(j);
  if (x == static_cast<double>(j)) return fp[k];  // NumPy returns the table value exactly
  const double slope = (fp[k + 1] - fp[k]) / 1.0;
  return slope * (x - static_cast<double>(j)) + fp[k];
}

// torch.linspace(start, end, steps, dtype=T) on CPU: the start and end are
// rounded to T, the step is computed in T, and each half is measured from its
// own end (start + step * i below the middle, end - step * (steps - 1 - i) above).
template <class T>
std::vector<T> torch_linspace(double start, double end, std::int64_t steps) {
  require(steps >= 1, "torch_linspace: steps must be >= 1, got ", steps);
  std::vector<T> y(static_cast<std::size_t>(steps));
  const T s = static_cast<T>(start), e = static_cast<T>(end);
  if (steps == 1) {
    y[0] = s;
    return y;
  }
  const T step = (e - s) / static_cast<T>(steps - 1);
  const std::int64_t halfway = steps / 2;
  for (std::int64_t i = 0; i < steps; ++i)
    y[static_cast<std::size_t>(i)] = i < halfway ? s + step * static_cast<T>(i) : e - step * static_cast<T>(steps - i - 1);
  return y;
}

// torch.cumprod on a CPU tensor: the running product is kept in double
// (at::acc_type) and every output is rounded to T.
template <class T>
std::vector<T> torch_cumprod(std::span<const T> x) {
  std::vector<T> out(x.size());
  double acc = 1.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    acc *= static_cast<double>(x[i]);
    out[i] = static_cast<T>(acc);
  }
  return out;
}

// torch.lerp's formula (two branches keep both ends exact).
template <class T>
T torch_lerp(T a, T b, T w) {
  return w < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

// torch.quantile(x, q) with linear interpolation. `scratch` is sorted in place.
// The rank q * (n - 1) is computed in T, as torch does with a tensor q of x's dtype.
template <class T>
T torch_quantile_inplace(std::span<T> scratch, double q) {
  require(!scratch.empty(), "quantile: empty input");
  require(q >= 0.0 && q <= 1.0, "quantile: q must be in [0, 1], got ", q);
  std::sort(scratch.begin(), scratch.end());
  const T rank = static_cast<T>(q) * static_cast<T>(scratch.size() - 1);
  const T below = std::floor(rank), above = std::ceil(rank);
  const T lo = scratch[static_cast<std::size_t>(below)], hi = scratch[static_cast<std::size_t>(above)];
  return torch_lerp(lo, hi, rank - below);
}

}  // namespace ddpm::numerics
