// Compiled, not run, by the ctest tests sampling/registry_*: a sampler_list
// whose samplers share a command-line name must not compile
// (-DDUPLICATE=1: the static_assert of sampler_list.hpp fires), and the same
// list with distinct names must (-DDUPLICATE=0), so the failure is the name.
#include <string_view>

#include "ddpm/sampling/registry.hpp"

namespace mine {
struct Config {};
template <class T>
struct Sampler : ddpm::DDIMSampler<T> {
  explicit Sampler(const Config& = {}) {}
};
}  // namespace mine

template <>
struct ddpm::SamplerTraits<mine::Sampler> {
  using config_type = mine::Config;
  static constexpr std::string_view name = DUPLICATE ? "ddim" : "mine";
  static constexpr std::string_view class_name = "MineScheduler";
};

using List = ddpm::sampler_list<ddpm::DDPMSampler, ddpm::DDIMSampler, mine::Sampler>;
static_assert(List::size == 3);
