#pragma once
// backend::FlopCounter: a backend that computes nothing and adds up each
// op's flops as the op table defines them (backend/ops.hpp: 2 x the
// multiply-adds of GEMMs, convolutions and attention). Running a model's
// forward on it gives the arithmetic cost that GFLOP/s rates are quoted on.
//
//   nn::UNet2D<float, backend::FlopCounter> m(config);
//   backend::FlopCounter::reset();
//   m.forward(x, t, labels);
//   double flops = backend::FlopCounter::flops();
//
// Outputs are left untouched (they may hold anything); ops that return a
// value return its type's default (0, false). The counter is process-wide and
// not synchronised.
#include <string_view>

#include "ddpm/backend/backend.hpp"
#include "ddpm/backend/ops.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::backend {

struct FlopCounter : Forwarding<FlopCounter, Host> {
  static constexpr std::string_view name() { return "flop-counter"; }
  static void set_num_threads(int) {}
  static int num_threads() { return 1; }

  static void reset() { total() = 0; }
  static double flops() { return total(); }

  template <class Op, class... A>
  static auto invoke(Op, A... a) {
    total() += Op::flops(a...);
    using R = typename Op::template signature<float, Host>;
    return result<R>{}();
  }

 private:
  template <class Sig>
  struct result;
  template <class R, class... P>
  struct result<R(P...)> {
    R operator()() const { return R{}; }
  };
  template <class... P>
  struct result<void(P...)> {
    void operator()() const {}
  };
  static double& total() {
    static double t = 0;
    return t;
  }
};

}  // namespace ddpm::backend
