#pragma once
// Small helpers the examples share: range-checked options, choosing a
// sampler by name, the thread count, and a main() wrapper that turns errors
// into one line on stderr.
#include <cxxopts.hpp>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "ddpm/backend/eigen.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/sampling/any_sampler.hpp"
#include "range.hpp"

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

// A numeric option: declared as a string, read and checked by option_in.
inline std::shared_ptr<cxxopts::Value> number() { return cxxopts::value<std::string>(); }
inline std::shared_ptr<cxxopts::Value> number(const std::string& default_value) {
  return cxxopts::value<std::string>()->default_value(default_value);
}

// The value of numeric option `name` (declared with number()) when it lies in
// the range, else ddpm::Error "--name: expected an integer in [lo, hi], got v"
// (exit 1); text that is no T at all is a command-line error (exit 2) with
// the same message. T is given explicitly: option_in<int>(r, "steps", 1, 1000).
template <class T>
T option_in(const cxxopts::ParseResult& r, const std::string& name, std::type_identity_t<T> lo,
            std::type_identity_t<T> hi, Ends ends = Ends::closed) {
  const std::string flag = "--" + name, text = r[name].as<std::string>();
  const auto v = read_number<T>(text);
  if (!v) throw cxxopts::exceptions::parsing(not_a_number<T>(flag, text, lo, hi, ends));
  return check_in<T>(flag, *v, lo, hi, ends);
}

// --seed: any 64-bit unsigned integer.
inline std::uint64_t seed_option(const cxxopts::ParseResult& r) {
  return option_in<std::uint64_t>(r, "seed", 0, std::numeric_limits<std::uint64_t>::max());
}

// --sampler, checked now (before any model is loaded or trained).
inline std::string sampler_option(const cxxopts::ParseResult& r) {
  auto name = r["sampler"].as<std::string>();
  sampler_config(name);  // throws "--sampler: unknown sampler ..."
  return name;
}

// The Eigen backend's thread count (0: all hardware threads).
inline void set_threads(int n) {
  if (n > 0) ddpm::backend::Eigen::set_num_threads(n);
}

// --threads and -h/--help, which every example has.
inline void add_threads_help(cxxopts::Options& opts, const std::string& group = "") {
  opts.add_options(group)
      ("threads", "CPU threads, 0 to " + std::to_string(kMaxThreads) + " (0: all hardware threads)", number("2"))
      ("h,help", "this help");
}

// Parses the command line; with --help prints the help and returns nothing,
// else checks and applies --threads and returns the options.
inline std::optional<cxxopts::ParseResult> parse_options(cxxopts::Options& opts, int argc, char** argv) {
  auto r = opts.parse(argc, argv);
  if (r.count("help")) {
    std::fputs(opts.help().c_str(), stdout);
    return std::nullopt;
  }
  set_threads(option_in<int>(r, "threads", 0, kMaxThreads));
  return r;
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
