#pragma once
// Composite layers: a layer made of other layers lists its children once, in
// for_each_child, and everything that walks the children is derived from it:
//
//   template <class F>
//   void for_each_child(F&& f) {
//     visit_children(f, norm1_, conv1_, time_emb_proj_, norm2_, conv2_, conv_shortcut_, silu_);
//   }
//   void init(Rng& rng) { init_children(*this, rng); }
//   void set_mode(Mode m) { set_mode_recursive(*this, m); }
//
// Contract of for_each_child: it calls f once on every child that is present,
// including children without parameters (activations, concatenations: their
// init draws nothing, but set_mode must reach them). Its order is the order in
// which init draws the children's weights from the random stream, so a seed's
// weights depend on it: a new child goes where it does not reorder the
// children that draw (tests/models pin the weights of seeded models).
#include <concepts>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "ddpm/core/random.hpp"
#include "ddpm/nn/layer_base.hpp"
#include "ddpm/nn/module.hpp"

namespace ddpm::nn {

// A layer with children in the sense above.
template <class L>
concept Composite = requires(L& layer) { layer.for_each_child([](auto&) {}); };

namespace composite_detail {

template <class C>
struct Holder : std::false_type {};  // a child held by value
template <class C>
struct Holder<std::optional<C>> : std::true_type {};
template <class C, class D>
struct Holder<std::unique_ptr<C, D>> : std::true_type {};

template <class C>
struct Sequence : std::false_type {};
template <class C, class A>
struct Sequence<std::vector<C, A>> : std::true_type {};

template <class F, class C>
void visit(F& f, C& child) {
  if constexpr (Holder<C>::value) {
    if (child) visit(f, *child);  // an optional child that is absent is skipped
  } else if constexpr (Sequence<C>::value) {
    for (auto& c : child) visit(f, c);
  } else {
    f(child);
  }
}

}  // namespace composite_detail

// Calls f on each child in argument order. A child may be a layer, a
// std::optional or std::unique_ptr of one (skipped when empty), or a
// std::vector of any of these (each element in order).
template <class F, class... Children>
void visit_children(F& f, Children&... children) {
  (composite_detail::visit(f, children), ...);
}

// init(rng) of every child, in for_each_child's order.
template <Composite L>
void init_children(L& layer, Rng& rng) {
  layer.for_each_child([&](auto& child) { child.init(rng); });
}

// Sets the mode of the layer itself (when it is a LayerBase) and of every
// child (a composite child passes it on to its own children).
template <Composite L>
void set_mode_recursive(L& layer, Mode m) {
  if constexpr (std::derived_from<L, LayerBase>) layer.LayerBase::set_mode(m);
  layer.for_each_child([&](auto& child) { child.set_mode(m); });
}

}  // namespace ddpm::nn
