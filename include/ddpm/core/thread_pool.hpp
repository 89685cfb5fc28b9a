#pragma once
// A small fork-join thread pool for the CPU backends.
//
//   ThreadPool pool(4);               // 4 participants: the caller + 3 workers
//   pool.run([&](int tid) { ... });   // tid = 0..3, tid 0 on the calling thread
//
// Work is split by the caller on `tid` (static partitioning), so which thread
// computes what is a pure function of the thread count: results are
// deterministic for a given count. run() returns when every participant is
// done; an exception thrown by any participant is rethrown in the caller
// (the first one, by tid).
//
// Nested or concurrent use never deadlocks and never changes results: a run()
// from inside a task, or while another thread is running the pool, executes
// the participants one after another on the calling thread, tid 0 first.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace ddpm {

class ThreadPool {
 public:
  // `threads` participants in total (>= 1), the caller included.
  explicit ThreadPool(int threads) : size_(std::max(threads, 1)), errors_(static_cast<std::size_t>(size_)) {
    workers_.reserve(static_cast<std::size_t>(size_ - 1));
    for (int t = 1; t < size_; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  int size() const { return size_; }

  // True on a thread currently executing a pool task (of any pool).
  static bool in_task() { return in_task_flag(); }

  // Calls f(tid) for every tid in [0, size()), concurrently when possible.
  template <class F>
  void run(F&& f) {
    using Fn = std::remove_reference_t<F>;
    if (size_ == 1 || in_task_flag() || !run_mutex_.try_lock()) {
      run_serial(f);
      return;
    }
    std::lock_guard run_lock(run_mutex_, std::adopt_lock);
    ctx_ = const_cast<void*>(static_cast<const void*>(std::addressof(f)));
    invoke_ = [](void* c, int tid) { (*static_cast<Fn*>(c))(tid); };
    for (auto& e : errors_) e = nullptr;
    pending_.store(size_ - 1, std::memory_order_relaxed);
    {
      std::lock_guard lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    execute(0);
    // Wait for the workers: spin briefly (they usually finish together), then sleep.
    for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
      if (spin < kSpin) {
        pause();
      } else {
        std::unique_lock lock(mutex_);
        done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
        break;
      }
    }
    for (auto& e : errors_)
      if (e) std::rethrow_exception(e);
  }

 private:
  // Workers spin kSpin pause()s (under a millisecond) before sleeping: ops
  // come back to back with a little serial work between them, and a worker
  // that went to sleep costs a futex wake-up, which in a VM can take longer
  // than a small op (measurements in examples/bench/NOTES.md).
  static constexpr int kSpin = 40000;

  static bool& in_task_flag() {
    static thread_local bool flag = false;
    return flag;
  }
  static void pause() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
  }

  template <class F>
  void run_serial(F& f) {
    const bool outer = in_task_flag();
    in_task_flag() = true;
    try {
      for (int t = 0; t < size_; ++t) f(t);
    } catch (...) {
      in_task_flag() = outer;
      throw;
    }
    in_task_flag() = outer;
  }

  void execute(int tid) {
    in_task_flag() = true;
    try {
      invoke_(ctx_, tid);
    } catch (...) {
      errors_[static_cast<std::size_t>(tid)] = std::current_exception();
    }
    in_task_flag() = false;
  }

  void worker_loop(int tid) {
    std::uint64_t seen = 0;
    for (;;) {
      // Spin a little for the next job (ops come back to back), then sleep.
      std::uint64_t g = generation_.load(std::memory_order_acquire);
      for (int spin = 0; g == seen && spin < kSpin; ++spin) {
        pause();
        g = generation_.load(std::memory_order_acquire);
      }
      if (g == seen) {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        g = generation_.load(std::memory_order_acquire);
      }
      seen = g;
      {
        std::lock_guard lock(mutex_);
        if (stop_) return;
      }
      execute(tid);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard lock(mutex_);
        done_.notify_all();
      }
    }
  }

  int size_;
  std::vector<std::thread> workers_;
  std::vector<std::exception_ptr> errors_;
  std::mutex run_mutex_;  // one run() at a time
  std::mutex mutex_;      // guards the sleeping side of generation_/pending_
  std::condition_variable wake_, done_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  bool stop_ = false;
  void* ctx_ = nullptr;
  void (*invoke_)(void*, int) = nullptr;
};

// [begin, end) of part `i` when `n` items are split into `parts` near-equal
// contiguous parts (the first n % parts get one more), each a multiple of
// `grain` except possibly the last.
inline std::pair<std::ptrdiff_t, std::ptrdiff_t> split_range(std::ptrdiff_t n, int parts, int i,
                                                             std::ptrdiff_t grain = 1) {
  const std::ptrdiff_t blocks = (n + grain - 1) / grain;
  const std::ptrdiff_t q = blocks / parts, r = blocks % parts;
  const std::ptrdiff_t b0 = i * q + std::min<std::ptrdiff_t>(i, r);
  const std::ptrdiff_t b1 = b0 + q + (i < r ? 1 : 0);
  return {std::min(n, b0 * grain), std::min(n, b1 * grain)};
}

}  // namespace ddpm
