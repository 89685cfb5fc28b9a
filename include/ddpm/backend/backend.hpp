#pragma once
// The compute-backend contract.
//
// A backend is a type with static members: its memory space, a name, a
// thread count, and `run(op, args...)` for every op of the table
// (backend/ops.hpp) in float and double. Layers in nn/ are written once
// against it and instantiated per backend:
//
//   backend::Reference    plain loops; the definition of what each op computes
//   backend::Cpu        the fast CPU path, checked against Reference
//   backend::Profiled<B>  B with a timer around every op
//   backend::FlopCounter  computes nothing, counts each op's flops
//
// A device backend brings a memory space of its own, a Tensor specialisation
// for it (core/tensor.hpp) and the same ops over its views; nn/ does not
// change (tests/backend/test_device_space.cpp instantiates the models with a
// backend whose views offer no element access).
#include <concepts>
#include <string_view>
#include <type_traits>
#include <utility>

#include "ddpm/backend/ops.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::backend {

namespace detail {
template <class B, class Op, class Sig>
struct runs;
template <class B, class Op, class R, class... A>
struct runs<B, Op, R(A...)> : std::bool_constant<requires(A... a) {
  { B::run(Op{}, a...) } -> std::convertible_to<R>;
}> {};

template <class B, class T, class M, class L>
struct runs_all;
template <class B, class T, class M, class... Ops>
struct runs_all<B, T, M, ops::list<Ops...>>
    : std::bool_constant<(runs<B, Ops, typename Ops::template signature<T, M>>::value && ...)> {};
}  // namespace detail

// B runs every op of the table for scalar type T on its own memory space.
template <class B, class T>
concept BackendOps = detail::runs_all<B, T, typename B::memory_space, ops::all>::value;

template <class B>
concept Backend = requires {
  typename B::memory_space;
  { B::name() } -> std::convertible_to<std::string_view>;
  // Threads the backend may use; set at run time (Reference ignores it).
  B::set_num_threads(1);
  { B::num_threads() } -> std::convertible_to<int>;
} && BackendOps<B, float> && BackendOps<B, double>;

// Forwarding<Derived, M>: one `run` overload per op of the table and scalar
// type, with the op's exact signature (so braced `{}` arguments and view
// conversions work as with a hand-written backend), each calling
// `Derived::invoke(op, args...)`. Backends that wrap another (Profiled,
// FlopCounter) or dispatch to free functions (Cpu) derive from it.
namespace detail {
template <class Derived, class Op, class Sig>
struct forward_one;
template <class Derived, class Op, class R, class... A>
struct forward_one<Derived, Op, R(A...)> {
  static R run(Op op, A... a) { return static_cast<R>(Derived::invoke(op, a...)); }
};
template <class Derived, class M, class L>
struct forward_all;
template <class Derived, class M, class... Ops>
struct forward_all<Derived, M, ops::list<Ops...>>
    : forward_one<Derived, Ops, typename Ops::template signature<float, M>>...,
      forward_one<Derived, Ops, typename Ops::template signature<double, M>>... {
  using forward_one<Derived, Ops, typename Ops::template signature<float, M>>::run...;
  using forward_one<Derived, Ops, typename Ops::template signature<double, M>>::run...;
};
}  // namespace detail

template <class Derived, class M>
struct Forwarding : detail::forward_all<Derived, M, ops::all> {
  using memory_space = M;
};

}  // namespace ddpm::backend
