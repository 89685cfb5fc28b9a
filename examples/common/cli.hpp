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
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/sampling/any_sampler.hpp"
#include "ddpm/sampling/inpaint.hpp"
#include "range.hpp"

namespace examples {

// The samplers whose sigmas can be spaced (--sigmas): "dpm++, euler, heun or kdpm2".
inline std::string spaced_sigma_sampler_names() {
  std::vector<std::string_view> names;
  ddpm::Samplers::for_each([&]<class Traits>(std::type_identity<Traits>) {
    if constexpr (requires(typename Traits::config_type c) { c.sigma_spacing; }) names.push_back(Traits::name);
  });
  std::string s;
  for (std::size_t i = 0; i < names.size(); ++i) s += std::string(i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") += names[i];
  return s;
}

// The sampler called `name` (a command-line name of the sampler registry,
// sampling/registry.hpp, or an alias) with diffusers' defaults, on `schedule`
// (default: diffusers' linear betas, 1000 steps, epsilon prediction), with
// Karras or exponential sigmas when `sigmas` says so ("" or "default": the
// sampler's own spacing). For images in [-1, 1] (DataRange::pixels),
// samplers with clipping keep x_0 there: DDPM and DDIM clip by default;
// those without static clipping (DPM-Solver) get dynamic thresholding with
// sample_max_value 1 (at t near T, x_0 = (x_t - sqrt(1 - abar) eps) /
// sqrt(abar) multiplies any error of eps by ~150). Latents, of unit standard
// deviation and no fixed range (DataRange::unbounded), are neither clipped
// nor thresholded, as in diffusers' latent pipelines.
enum class DataRange { pixels, unbounded };

inline ddpm::SamplerConfig sampler_config(const std::string& name, const ddpm::ScheduleConfig& schedule = {},
                                          const std::string& sigmas = "", DataRange range = DataRange::pixels) {
  ddpm::SamplerConfig config = ddpm::sampler_config_named(name, "--sampler");
  std::optional<ddpm::SigmaSpacing> spacing;
  if (sigmas == "karras") spacing = ddpm::SigmaSpacing::karras;
  else if (sigmas == "exponential") spacing = ddpm::SigmaSpacing::exponential;
  else ddpm::require(sigmas.empty() || sigmas == "default", "--sigmas: expected karras, exponential or default, got '",
                     sigmas, "'");
  std::visit(
      [&](auto& c) {
        c.schedule = schedule;
        if constexpr (requires { c.clipping; }) {
          if (range == DataRange::unbounded) {
            c.clipping.clip_sample = false;
            c.clipping.thresholding = false;
          } else if (!c.clipping.clip_sample) {
            c.clipping.thresholding = true;
            c.clipping.sample_max_value = 1.0;
          }
        }
        // DDIM: the noise the step re-adds is re-derived from the clipped x_0
        // (Glide's choice; diffusers' use_clipped_model_output). With the
        // model's own eps beside a clipped x_0, the deterministic step keeps
        // re-adding noise its x_0 no longer explains, and more steps give
        // noisier digits.
        if constexpr (requires { c.use_clipped_model_output; }) c.use_clipped_model_output = true;
        if constexpr (requires { c.sigma_spacing; }) {
          if (spacing) c.sigma_spacing = *spacing;
        } else {
          ddpm::require(!spacing, "--sigmas: the ", name, " sampler has no sigma spacing; ", sigmas,
                        " sigmas work with ", spaced_sigma_sampler_names());
        }
      },
      config);
  return config;
}

// The --sampler option's help: the samplers that generate (from noise to
// data), "ddpm, ddim, dpm++ or euler".
inline std::string sampler_help() { return ddpm::sampler_names_text(" or ", ddpm::SamplerDirection::to_data); }

// The --sigmas option's help.
inline std::string sigmas_help() {
  return "sigma spacing: karras, exponential or default (the sampler's own); for " + spaced_sigma_sampler_names();
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
// A sampler that runs from data to noise (ddim-inverse) is refused here.
inline std::string sampler_option(const cxxopts::ParseResult& r) {
  auto name = r["sampler"].as<std::string>();
  // throws "--sampler: unknown sampler 'x'; expected ddpm, ddim, dpm++ or euler"
  const auto config = sampler_config(name);
  ddpm::require(ddpm::sampler_direction(config) == ddpm::SamplerDirection::to_data, "--sampler: ", name,
                " runs from data to noise (inversion), it does not generate; expected ", sampler_help());
  return name;
}

// --sigmas, checked against the chosen --sampler now.
inline std::string sigmas_option(const cxxopts::ParseResult& r, const std::string& sampler) {
  auto sigmas = r["sigmas"].as<std::string>();
  sampler_config(sampler, {}, sigmas);
  return sigmas;
}

// The samplers RePaint can use (one-step samplers: sampling/inpaint.hpp), "ddpm or ddim".
inline std::string repaint_sampler_help() {
  std::string s;
  std::size_t count = 0;
  ddpm::Samplers::for_each_sampler<float>([&]<class Traits, class S>(std::type_identity<Traits>, std::type_identity<S>) {
    if constexpr (ddpm::SteppedSampler<S>) s += (count++ ? ", " : "") + std::string(Traits::name);
  });
  if (const auto last = s.rfind(", "); last != std::string::npos) s.replace(last, 2, " or ");
  return s;
}

// Throws "<what>: expected ddpm or ddim (RePaint needs a one-step sampler), got 'x'"
// unless `name` is a sampler RePaint can use.
inline void require_repaint_sampler(const std::string& name, const std::string& what = "--sampler") {
  const auto sampler = ddpm::make_sampler<float>(sampler_config(name));
  const bool stepped = std::visit([](const auto& s) { return ddpm::SteppedSampler<std::decay_t<decltype(s)>>; }, sampler);
  ddpm::require(stepped, what, ": expected ", repaint_sampler_help(), " (RePaint needs a one-step sampler), got '", name,
                "'");
}

// --sampler for RePaint: a one-step sampler, checked now.
inline std::string repaint_sampler_option(const cxxopts::ParseResult& r) {
  const auto name = sampler_option(r);
  require_repaint_sampler(name);
  return name;
}

// The Eigen backend's thread count (0: all hardware threads).
inline void set_threads(int n) {
  if (n > 0) ddpm::backend::Cpu::set_num_threads(n);
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
