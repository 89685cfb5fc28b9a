#pragma once
// Where diffusers computes in float32 even when the model is float64.
#include <cmath>

namespace ddpm::nn {

// diffusers evaluates the sinusoidal timestep embedding and the attention
// softmax in float32 even after model.double(). Diffusers reproduces that
// (the reference for its `output_f64` golden data); Exact computes them in
// the layer's scalar type (`output_f64_exact`). Both are the same for float.
enum class Numerics { Diffusers, Exact };

}  // namespace ddpm::nn
