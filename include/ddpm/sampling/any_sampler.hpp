#pragma once
// A sampler chosen at run time (from a scheduler_config.json, a command-line
// flag): a variant over the registered samplers (sampling/registry.hpp), and
// the matching config variant. std::visit gives back the concrete sampler, so
// the loop stays a template; sample_loop, sdedit and repaint also take an
// AnySampler directly.
//
//   SamplerConfig c = sampler_config_named("ddim");   // or io::read_scheduler_config(file)
//   AnySampler<float> s = make_sampler<float>(c);
//   set_timesteps(s, 50);
//   Tensor<float> x = sample_loop(s, model, noise.cview(), NoiseSource<float>(rng));
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/sampling/registry.hpp"

namespace ddpm {

using SamplerConfig = Samplers::config_variant;

template <Scalar T>
using AnySampler = Samplers::sampler_variant<T>;

template <Scalar T>
AnySampler<T> make_sampler(const SamplerConfig& config) {
  return std::visit(
      [](const auto& c) -> AnySampler<T> {
        return Samplers::sampler_of<std::decay_t<decltype(c)>, T>(c);
      },
      config);
}

// Chooses the timesteps of whichever sampler `sampler` holds (set_timesteps(n)).
template <Scalar T>
void set_timesteps(AnySampler<T>& sampler, index_t num_inference_steps) {
  std::visit([&](auto& s) { s.set_timesteps(num_inference_steps); }, sampler);
}

// The timesteps the sampler visits: one model call each (second-order
// samplers list a timestep once per call).
template <Scalar T>
std::span<const double> timesteps(const AnySampler<T>& sampler) {
  return std::visit([](const auto& s) { return std::span<const double>(s.timesteps()); }, sampler);
}

// The diffusers class name of a config ("DDPMScheduler", ...).
inline std::string_view scheduler_class_name(const SamplerConfig& config) {
  return std::visit([](const auto& c) { return Samplers::traits_of<std::decay_t<decltype(c)>>::class_name; }, config);
}

// The command-line name of a config ("ddpm", ...).
inline std::string_view sampler_name(const SamplerConfig& config) {
  return std::visit([](const auto& c) { return Samplers::traits_of<std::decay_t<decltype(c)>>::name; }, config);
}

// The command-line name of a sampler (the variants list the samplers in the same order).
template <Scalar T>
std::string_view sampler_name(const AnySampler<T>& sampler) {
  return Samplers::names[sampler.index()];
}

// The command-line names, "ddpm, ddim, dpm++ or euler" (`last` joins the last
// two); with `direction`, only the samplers that run that way.
inline std::string sampler_names_text(std::string_view last = " or ",
                                      std::optional<SamplerDirection> direction = std::nullopt) {
  std::vector<std::string_view> names;
  Samplers::for_each([&]<class Traits>(std::type_identity<Traits>) {
    if (!direction || sampler_direction<Traits>() == *direction) names.push_back(Traits::name);
  });
  std::string s;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) s += i + 1 == names.size() ? last : std::string_view(", ");
    s += names[i];
  }
  return s;
}

// Which way the sampler that `config` configures runs.
inline SamplerDirection sampler_direction(const SamplerConfig& config) {
  return std::visit(
      [](const auto& c) { return sampler_direction<Samplers::traits_of<std::decay_t<decltype(c)>>>(); }, config);
}

// The default config of the sampler called `name` (a command-line name or
// alias): diffusers' defaults. `what` names the option in the error.
inline SamplerConfig sampler_config_named(std::string_view name, std::string_view what = "sampler") {
  SamplerConfig out;
  bool found = false;
  Samplers::for_each([&]<class Traits>(std::type_identity<Traits>) {
    bool match = name == Traits::name;
    if constexpr (requires { Traits::aliases; })
      for (std::string_view alias : Traits::aliases) match = match || name == alias;
    if (match && !found) {
      out = typename Traits::config_type{};
      found = true;
    }
  });
  if (!found) fail(what, ": unknown sampler '", name, "'; expected ", sampler_names_text());
  return out;
}

}  // namespace ddpm
