// core/thread_pool.hpp against its contract: run(f) calls f(tid) once for every
// tid in [0, size()), tid 0 on the caller; split_range partitions [0, n) into
// near-equal contiguous parts; the first exception (by tid) reaches the caller;
// nested and concurrent run() execute serially on the calling thread, tid 0
// first; a static split gives bit-identical results run after run.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ddpm/core/thread_pool.hpp"

using ddpm::split_range;
using ddpm::ThreadPool;

namespace {

// Visits every index of [0, n) through run() + split_range; returns the visit counts.
std::vector<int> visit_counts(ThreadPool& pool, std::ptrdiff_t n, std::ptrdiff_t grain = 1) {
  std::vector<std::atomic<int>> counts(static_cast<std::size_t>(n));
  pool.run([&](int tid) {
    const auto [b, e] = split_range(n, pool.size(), tid, grain);
    for (std::ptrdiff_t i = b; i < e; ++i) counts[static_cast<std::size_t>(i)].fetch_add(1);
  });
  std::vector<int> out;
  for (auto& c : counts) out.push_back(c.load());
  return out;
}

// A float sum whose value depends on the order of additions: per-tid partial
// sums over the static split, combined in tid order.
float split_sum(ThreadPool& pool, const std::vector<float>& x) {
  std::vector<float> partial(static_cast<std::size_t>(pool.size()), 0.0f);
  pool.run([&](int tid) {
    const auto [b, e] = split_range(static_cast<std::ptrdiff_t>(x.size()), pool.size(), tid);
    float s = 0;
    for (std::ptrdiff_t i = b; i < e; ++i) s += x[static_cast<std::size_t>(i)];
    partial[static_cast<std::size_t>(tid)] = s;
  });
  float s = 0;
  for (float p : partial) s += p;
  return s;
}

}  // namespace

TEST_CASE("thread pool: size counts the caller; non-positive sizes give one participant", "[core][thread_pool]") {
  CHECK(ThreadPool(4).size() == 4);
  CHECK(ThreadPool(1).size() == 1);
  CHECK(ThreadPool(0).size() == 1);
  CHECK(ThreadPool(-3).size() == 1);
}

TEST_CASE("thread pool: run calls every tid exactly once, tid 0 on the calling thread", "[core][thread_pool]") {
  for (int threads : {1, 2, 3, 8}) {
    INFO(threads << " threads");
    ThreadPool pool(threads);
    // Repeated: a lost wake-up or a double run would show. Fewer rounds with
    // more threads than cores (the waiting side spins before it sleeps).
    const int reps = threads <= 2 ? 200 : 20;
    for (int rep = 0; rep < reps; ++rep) {
      std::vector<std::atomic<int>> calls(static_cast<std::size_t>(threads));
      std::thread::id tid0;
      std::atomic<int> out_of_range{0};
      pool.run([&](int tid) {
        if (tid < 0 || tid >= threads) {
          out_of_range.fetch_add(1);
          return;
        }
        calls[static_cast<std::size_t>(tid)].fetch_add(1);
        if (tid == 0) tid0 = std::this_thread::get_id();
      });
      REQUIRE(out_of_range.load() == 0);
      for (auto& c : calls) REQUIRE(c.load() == 1);
      REQUIRE(tid0 == std::this_thread::get_id());
    }
  }
}

TEST_CASE("thread pool: in_task is true inside a task only", "[core][thread_pool]") {
  ThreadPool pool(3);
  CHECK_FALSE(ThreadPool::in_task());
  std::atomic<int> inside{0};
  pool.run([&](int) { inside.fetch_add(ThreadPool::in_task() ? 1 : 0); });
  CHECK(inside.load() == 3);
  CHECK_FALSE(ThreadPool::in_task());
}

TEST_CASE("split_range: contiguous near-equal parts covering [0, n) once", "[core][thread_pool]") {
  for (std::ptrdiff_t grain : {1, 3, 8}) {
    for (int parts : {1, 2, 3, 7, 16}) {
      for (std::ptrdiff_t n : {0, 1, 2, 5, 7, 16, 100, 1001}) {
        INFO("n " << n << ", parts " << parts << ", grain " << grain);
        std::ptrdiff_t next = 0, smallest = n, largest = 0;
        for (int i = 0; i < parts; ++i) {
          const auto [b, e] = split_range(n, parts, i, grain);
          REQUIRE(b == next);  // contiguous, in order, no gap, no overlap
          REQUIRE(e >= b);
          if (e < n) CHECK((e - b) % grain == 0);  // whole grains except the part that ends at n
          smallest = std::min(smallest, e - b);
          largest = std::max(largest, e - b);
          next = e;
        }
        REQUIRE(next == n);
        CHECK(largest - smallest <= 2 * grain - 1);  // near-equal: one grain apart, and the last one partial
      }
    }
  }
  // The first n % parts parts get one more item.
  CHECK(split_range(10, 4, 0) == std::pair<std::ptrdiff_t, std::ptrdiff_t>{0, 3});
  CHECK(split_range(10, 4, 1) == std::pair<std::ptrdiff_t, std::ptrdiff_t>{3, 6});
  CHECK(split_range(10, 4, 2) == std::pair<std::ptrdiff_t, std::ptrdiff_t>{6, 8});
  CHECK(split_range(10, 4, 3) == std::pair<std::ptrdiff_t, std::ptrdiff_t>{8, 10});
}

TEST_CASE("thread pool: every index visited exactly once (zero-size, small and large work)", "[core][thread_pool]") {
  for (int threads : {1, 2, 4, 8}) {
    ThreadPool pool(threads);
    for (std::ptrdiff_t n : {0, 1, 3, 8, 1000, 100003}) {
      for (std::ptrdiff_t grain : {1, 16}) {
        INFO(threads << " threads, n " << n << ", grain " << grain);
        const auto counts = visit_counts(pool, n, grain);
        REQUIRE(static_cast<std::ptrdiff_t>(counts.size()) == n);
        CHECK(std::count(counts.begin(), counts.end(), 1) == n);
      }
    }
  }
}

TEST_CASE("thread pool: more threads than work leaves the extra participants idle", "[core][thread_pool]") {
  ThreadPool pool(8);
  std::vector<std::atomic<int>> items_of(8);
  const std::ptrdiff_t n = 3;
  pool.run([&](int tid) {
    const auto [b, e] = split_range(n, pool.size(), tid);
    items_of[static_cast<std::size_t>(tid)].store(static_cast<int>(e - b));
  });
  for (int t = 0; t < 8; ++t) CHECK(items_of[static_cast<std::size_t>(t)].load() == (t < 3 ? 1 : 0));
}

TEST_CASE("thread pool: an exception reaches the caller (the first by tid) and the pool stays usable",
          "[core][thread_pool]") {
  ThreadPool pool(4);
  SECTION("one participant throws") {
    std::atomic<int> ran{0};
    try {
      pool.run([&](int tid) {
        ran.fetch_add(1);
        if (tid == 2) throw std::runtime_error("tid 2");
      });
      FAIL("no exception");
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()) == "tid 2");
    }
    CHECK(ran.load() == 4);  // the others still ran to the end
  }
  SECTION("several throw: the lowest tid's exception wins") {
    for (int rep = 0; rep < 20; ++rep) {
      try {
        pool.run([&](int tid) {
          if (tid >= 1) throw std::runtime_error("tid " + std::to_string(tid));
        });
        FAIL("no exception");
      } catch (const std::runtime_error& e) {
        REQUIRE(std::string(e.what()) == "tid 1");
      }
    }
  }
  SECTION("the caller's own participant throws") {
    CHECK_THROWS_WITH(pool.run([&](int tid) {
      if (tid == 0) throw std::runtime_error("tid 0");
    }),
                      "tid 0");
  }
  SECTION("a nested (serial) run throws through both levels") {
    CHECK_THROWS_WITH(pool.run([&](int) {
      pool.run([&](int tid) {
        if (tid == 3) throw std::runtime_error("inner tid 3");
      });
    }),
                      "inner tid 3");
  }
  // Afterwards: every tid once again, and not flagged as inside a task.
  CHECK_FALSE(ThreadPool::in_task());
  const auto counts = visit_counts(pool, 4);
  for (int c : counts) CHECK(c == 1);
}

TEST_CASE("thread pool: nested run executes serially on the calling thread, tid 0 first", "[core][thread_pool]") {
  ThreadPool pool(4);
  std::vector<std::vector<int>> order(4);
  std::vector<std::atomic<int>> foreign(4);
  pool.run([&](int outer) {
    const auto self = std::this_thread::get_id();
    pool.run([&](int inner) {
      order[static_cast<std::size_t>(outer)].push_back(inner);  // only this outer task writes its row
      if (std::this_thread::get_id() != self) foreign[static_cast<std::size_t>(outer)].fetch_add(1);
    });
  });
  for (int t = 0; t < 4; ++t) {
    CHECK(order[static_cast<std::size_t>(t)] == std::vector<int>{0, 1, 2, 3});
    CHECK(foreign[static_cast<std::size_t>(t)].load() == 0);
  }
  // Nesting through a second pool is serial too (in_task is per thread, any pool).
  ThreadPool other(3);
  std::atomic<int> calls{0};
  pool.run([&](int) { other.run([&](int) { calls.fetch_add(1); }); });
  CHECK(calls.load() == 4 * 3);
}

TEST_CASE("thread pool: concurrent run from two threads completes both, each tid once", "[core][thread_pool]") {
  ThreadPool pool(3);
  constexpr int kRuns = 100;
  std::atomic<int> bad{0};
  auto client = [&] {
    for (int r = 0; r < kRuns; ++r) {
      std::vector<std::atomic<int>> calls(3);
      pool.run([&](int tid) { calls[static_cast<std::size_t>(tid)].fetch_add(1); });
      for (auto& c : calls)
        if (c.load() != 1) bad.fetch_add(1);
    }
  };
  std::thread a(client), b(client);
  a.join();
  b.join();
  CHECK(bad.load() == 0);
}

TEST_CASE("thread pool: a static split is deterministic (same thread count, same bits)", "[core][thread_pool]") {
  std::vector<float> x(100003);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 1.0f / static_cast<float>(i + 1) * ((i % 3) ? 1.0f : -0.37f);
  for (int threads : {1, 2, 3, 5}) {
    INFO(threads << " threads");
    ThreadPool pool(threads);
    const float first = split_sum(pool, x);
    for (int rep = 0; rep < 20; ++rep) REQUIRE(split_sum(pool, x) == first);
    // The same split run serially (nested inside a task) gives the same bits:
    // the result depends on the thread count only, not on scheduling.
    float nested = 0;
    ThreadPool outer(2);
    outer.run([&](int tid) {
      if (tid == 0) nested = split_sum(pool, x);
    });
    CHECK(nested == first);
    // And a fresh pool of the same size agrees.
    ThreadPool again(threads);
    CHECK(split_sum(again, x) == first);
  }
}

TEST_CASE("thread pool: constructed and destroyed without work, or right after it", "[core][thread_pool]") {
  for (int rep = 0; rep < 20; ++rep) {
    ThreadPool idle(4);
    ThreadPool busy(4);
    std::atomic<int> n{0};
    busy.run([&](int) { n.fetch_add(1); });
    CHECK(n.load() == 4);
  }
}
