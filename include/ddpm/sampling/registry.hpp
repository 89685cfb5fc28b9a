#pragma once
// The library's samplers: one line. AnySampler, SamplerConfig, make_sampler,
// the names (sampling/any_sampler.hpp), scheduler_config.json reading and
// writing (io/scheduler_config.hpp) and the examples' --sampler option all
// derive from it.
//
// Adding a sampler: write its header (the class, its config struct, its
// SamplerTraits: sampling/sampler.hpp), include it here and add it to the list.
#include "ddpm/sampling/ddim.hpp"
#include "ddpm/sampling/ddim_inverse.hpp"
#include "ddpm/sampling/ddpm.hpp"
#include "ddpm/sampling/dpm_solver.hpp"
#include "ddpm/sampling/euler.hpp"
#include "ddpm/sampling/euler_ancestral.hpp"
#include "ddpm/sampling/heun.hpp"
#include "ddpm/sampling/kdpm2.hpp"
#include "ddpm/sampling/sampler_list.hpp"
#include "ddpm/sampling/unipc.hpp"

namespace ddpm {

using Samplers = sampler_list<DDPMSampler, DDIMSampler, DPMSolverSampler, EulerSampler, EulerAncestralSampler, HeunSampler,
                              DDIMInverseSampler, KDPM2Sampler, UniPCSampler>;

}  // namespace ddpm
