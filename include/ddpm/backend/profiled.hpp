#pragma once
// backend::Profiled<B>: backend B with a wall-clock timer around every op.
//
//   using P = backend::Profiled<backend::Cpu>;
//   nn::UNet2D<float, P> model(config);
//   P::reset();  ...train or sample...
//   for (const auto& r : P::report()) std::printf("%s %d %.1f ms\n", ...);
//
// It answers "where does the time go" per op kind, threading included (a
// perf profile counts CPU time, so it cannot show one core idling while the
// other finishes an op). The time outside every op (the total minus the
// sum) is what nn/ and train/ spend in their own loops. The counters are
// process-wide and not synchronised: time from one thread at a time.
#include <algorithm>
#include <array>
#include <chrono>
#include <string_view>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/backend/ops.hpp"

namespace ddpm::backend {

struct OpTime {
  std::string_view name;  // the op's name in the table (ops::<name>)
  long long calls = 0;
  double seconds = 0;
};

template <Backend B>
struct Profiled : Forwarding<Profiled<B>, typename B::memory_space> {
  static constexpr std::string_view name() { return "profiled"; }
  static void set_num_threads(int n) { B::set_num_threads(n); }
  static int num_threads() { return B::num_threads(); }

  static void reset() { table() = {}; }
  // The ops that ran since the last reset, slowest first.
  static std::vector<OpTime> report() {
    std::vector<OpTime> out;
    for (std::size_t i = 0; i < ops::all::size; ++i)
      if (table()[i].calls > 0) out.push_back({ops::names<ops::all>::value[i], table()[i].calls, table()[i].seconds});
    std::sort(out.begin(), out.end(), [](const OpTime& a, const OpTime& b) { return a.seconds > b.seconds; });
    return out;
  }

  template <class Op, class... A>
  static decltype(auto) invoke(Op op, A... a) {
    const Timer timer{table()[ops::index_of<Op, ops::all>::value], std::chrono::steady_clock::now()};
    return B::run(op, a...);
  }

 private:
  struct Counter {
    long long calls = 0;
    double seconds = 0;
  };
  // Adds the time from its construction to its destruction (after the op's
  // result, if any, has been computed) to one op's counter.
  struct Timer {
    Counter& c;
    std::chrono::steady_clock::time_point t0;
    ~Timer() {
      const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
      ++c.calls;
      c.seconds += dt.count();
    }
  };
  static std::array<Counter, ops::all::size>& table() {
    static std::array<Counter, ops::all::size> t{};
    return t;
  }
};

}  // namespace ddpm::backend
