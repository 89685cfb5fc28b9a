#pragma once
// sampler_list<S...>: a list of sampler templates, each registered by its
// SamplerTraits (sampling/sampler.hpp), and what derives from it: the sampler
// and config variants, the command-line and diffusers names, lookups by
// config type. sampling/registry.hpp holds the library's list.
//
// The list checks itself when instantiated: every command-line name and
// alias, every diffusers class name and every config type appears once, and
// every sampler satisfies Sampler for float and double and is built from its
// config_type. sampler_list_checks<S...> states the same checks as values.
#include <array>
#include <concepts>
#include <cstddef>
#include <string_view>
#include <type_traits>
#include <variant>

#include "ddpm/core/tensor.hpp"
#include "ddpm/sampling/sampler.hpp"

namespace ddpm {

namespace detail {

template <class Traits>
constexpr std::size_t alias_count() {
  if constexpr (requires { Traits::aliases; })
    return std::size(Traits::aliases);
  else
    return 0;
}

template <class C, class... Cs>
constexpr std::size_t count_of = (std::size_t{std::is_same_v<C, Cs>} + ... + 0);

template <std::size_t N>
constexpr bool all_distinct(const std::array<std::string_view, N>& a) {
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t j = i + 1; j < N; ++j)
      if (a[i] == a[j]) return false;
  return true;
}

// A name a user can type: not empty, no space, comma or quote.
constexpr bool plain_name(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c == ' ' || c == ',' || c == '"' || c == '\'') return false;
  return true;
}

template <template <class> class S>
constexpr bool registrable = requires { typename SamplerTraits<S>::config_type; } &&
                             Sampler<S<float>> && Sampler<S<double>> &&
                             std::constructible_from<S<float>, const typename SamplerTraits<S>::config_type&> &&
                             std::constructible_from<S<double>, const typename SamplerTraits<S>::config_type&> &&
                             std::is_default_constructible_v<typename SamplerTraits<S>::config_type>;

}  // namespace detail

// The checks sampler_list asserts, as values (so a test can show that each
// one catches its mistake without failing to compile).
template <template <class> class... Ss>
struct sampler_list_checks {
  // Every command-line name, then its aliases, sampler by sampler.
  static constexpr auto all_names() {
    std::array<std::string_view, ((1 + detail::alias_count<SamplerTraits<Ss>>()) + ... + 0)> a{};
    std::size_t i = 0;
    const auto add = [&]<class Traits>(std::type_identity<Traits>) {
      a[i++] = Traits::name;
      if constexpr (requires { Traits::aliases; })
        for (std::string_view alias : Traits::aliases) a[i++] = alias;
    };
    (add(std::type_identity<SamplerTraits<Ss>>{}), ...);
    return a;
  }
  static constexpr bool names_distinct = detail::all_distinct(all_names());
  static constexpr bool names_plain = [] {
    for (std::string_view s : all_names())
      if (!detail::plain_name(s)) return false;
    return true;
  }();
  static constexpr bool class_names_distinct =
      detail::all_distinct(std::array<std::string_view, sizeof...(Ss)>{SamplerTraits<Ss>::class_name...});
  static constexpr bool configs_distinct =
      ((detail::count_of<typename SamplerTraits<Ss>::config_type, typename SamplerTraits<Ss>::config_type...> == 1) &&
       ...);
  static constexpr bool samplers_registrable = (detail::registrable<Ss> && ...);
};

template <template <class> class... Ss>
struct sampler_list {
  using checks = sampler_list_checks<Ss...>;
  static_assert(sizeof...(Ss) > 0, "sampler_list: list at least one sampler");
  static_assert(checks::samplers_registrable,
                "sampler_list: each sampler needs a SamplerTraits specialisation (config_type, name, class_name), "
                "must satisfy Sampler for float and double, and be constructible from its config_type");
  static_assert(checks::names_distinct, "sampler_list: two samplers share a command-line name or alias");
  static_assert(checks::names_plain, "sampler_list: a command-line name is empty or has a space, comma or quote");
  static_assert(checks::class_names_distinct, "sampler_list: two samplers share a diffusers class name");
  static_assert(checks::configs_distinct, "sampler_list: two samplers share a config type");

  static constexpr std::size_t size = sizeof...(Ss);

  // The config of any listed sampler, and any listed sampler for T; the
  // alternatives are in list order in both.
  using config_variant = std::variant<typename SamplerTraits<Ss>::config_type...>;
  template <Scalar T>
  using sampler_variant = std::variant<Ss<T>...>;

  // Command-line names and diffusers class names, in list order.
  static constexpr std::array<std::string_view, size> names{SamplerTraits<Ss>::name...};
  static constexpr std::array<std::string_view, size> class_names{SamplerTraits<Ss>::class_name...};

  // The position of the sampler whose config type is C.
  template <class C>
  static constexpr std::size_t index_of = [] {
    constexpr bool match[] = {std::is_same_v<C, typename SamplerTraits<Ss>::config_type>...};
    std::size_t i = 0;
    while (i < size && !match[i]) ++i;
    return i;
  }();
  // The traits, and the sampler for T, of the sampler whose config type is C.
  template <class C>
    requires(index_of<C> < size)
  using traits_of = std::variant_alternative_t<index_of<C>, std::variant<SamplerTraits<Ss>...>>;
  template <class C, Scalar T>
    requires(index_of<C> < size)
  using sampler_of = std::variant_alternative_t<index_of<C>, sampler_variant<T>>;

  // Calls f(std::type_identity<SamplerTraits<S>>{}) for each sampler, in list order.
  template <class F>
  static constexpr void for_each(F&& f) {
    (f(std::type_identity<SamplerTraits<Ss>>{}), ...);
  }
  // Calls f(std::type_identity<SamplerTraits<S>>{}, std::type_identity<S<T>>{}) for each sampler, in list order.
  template <Scalar T, class F>
  static constexpr void for_each_sampler(F&& f) {
    (f(std::type_identity<SamplerTraits<Ss>>{}, std::type_identity<Ss<T>>{}), ...);
  }
};

}  // namespace ddpm
