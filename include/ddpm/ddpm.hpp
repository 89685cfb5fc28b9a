#pragma once
// ddpm: header-only denoising diffusion models.
// The umbrella header: everything except optional parts (io needs
// nlohmann_json and is included when it is available; MPI is separate).
#include "ddpm/core/error.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"

#if __has_include(<nlohmann/json.hpp>)
#include "ddpm/io/file.hpp"
#include "ddpm/io/safetensors.hpp"
#endif
