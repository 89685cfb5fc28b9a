#pragma once
// A sampler chosen at run time (from a scheduler_config.json, a command-line
// flag): a variant over the four samplers, and the matching config variant.
// std::visit gives back the concrete sampler, so the loop stays a template.
#include <type_traits>
#include <variant>

#include "ddpm/core/tensor.hpp"
#include "ddpm/sampling/ddim.hpp"
#include "ddpm/sampling/ddpm.hpp"
#include "ddpm/sampling/dpm_solver.hpp"
#include "ddpm/sampling/euler.hpp"

namespace ddpm {

using SamplerConfig = std::variant<DDPMConfig, DDIMConfig, DPMSolverConfig, EulerConfig>;

template <Scalar T>
using AnySampler = std::variant<DDPMSampler<T>, DDIMSampler<T>, DPMSolverSampler<T>, EulerSampler<T>>;

template <Scalar T>
AnySampler<T> make_sampler(const SamplerConfig& config) {
  return std::visit(
      [](const auto& c) -> AnySampler<T> {
        using C = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<C, DDPMConfig>) return DDPMSampler<T>(c);
        else if constexpr (std::is_same_v<C, DDIMConfig>) return DDIMSampler<T>(c);
        else if constexpr (std::is_same_v<C, DPMSolverConfig>) return DPMSolverSampler<T>(c);
        else return EulerSampler<T>(c);
      },
      config);
}

// The diffusers class name of a config ("DDPMScheduler", ...).
inline const char* scheduler_class_name(const SamplerConfig& config) {
  constexpr const char* names[] = {"DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler",
                                   "EulerDiscreteScheduler"};
  return names[config.index()];
}

}  // namespace ddpm
