#pragma once
// Small helpers the examples share: choosing a sampler by name, the thread
// count, and a main() wrapper that turns errors into one line on stderr.
#include <cxxopts.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "ddpm/backend/eigen.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/sampling/any_sampler.hpp"

namespace examples {

// "ddpm", "ddim" or "dpm++" (also "dpmsolver++") with the library's defaults
// for a model trained with diffusers' default schedule (linear betas, 1000
// steps, epsilon prediction). All three keep x_0 in [-1, 1].
inline ddpm::SamplerConfig sampler_config(const std::string& name, const ddpm::ScheduleConfig& schedule = {}) {
  if (name == "ddpm") {
    ddpm::DDPMConfig c;
    c.schedule = schedule;
    return c;
  }
  if (name == "ddim") {
    ddpm::DDIMConfig c;
    c.schedule = schedule;
    return c;
  }
  if (name == "dpm++" || name == "dpmsolver++" || name == "dpm") {
    ddpm::DPMSolverConfig c;
    c.schedule = schedule;
    // DPM-Solver has no static clipping; dynamic thresholding with
    // sample_max_value 1 keeps x_0 in [-1, 1] as DDPM and DDIM's clipping do
    // (at t near T, x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) multiplies
    // any error of eps by ~150).
    c.clipping.thresholding = true;
    c.clipping.sample_max_value = 1.0;
    return c;
  }
  ddpm::fail("--sampler: unknown sampler '", name, "' (expected ddpm, ddim or dpm++)");
}

// The Eigen backend's thread count (0: all hardware threads).
inline void set_threads(int n) {
  if (n > 0) ddpm::backend::Eigen::set_num_threads(n);
}

// Runs `body`, printing ddpm::Error and option errors as one line; returns the exit code.
template <class F>
int run_main(const char* program, F&& body) {
  try {
    return body();
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", program, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace examples
