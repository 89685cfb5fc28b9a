// gemm_rate: the machine's fp32 GEMM rate, the yardstick for ddpm_bench.
//
//   gemm_rate [--threads N] [--size 2048] [--repeat 5]
//
// Times C = A * B on square float matrices (median of --repeat after a
// warm-up) with
//   eigen-1t      Eigen's GEMM on one thread (what gemm/linear/attention use)
//   ddpm-cpu      backend::Cpu gemm with --threads threads (Eigen GEMM split
//                 over the backend's pool)
//   ddpm-packed   the backend's packed conv micro-kernel (eigen/kernel.hpp),
//                 split over the threads by columns (AVX2+FMA builds)
//   openblas      cblas_sgemm with --threads threads (when built with
//                 OpenBLAS; OPENBLAS_CORETYPE is chosen as bench_torch.py
//                 does: SkylakeX with AVX-512, Haswell with AVX2)
// The last line is one JSON object of GFLOP/s, "machine_gflops" being the best.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/core/random.hpp"
#include "../common/range.hpp"

#if DDPM_HAVE_CBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif

namespace {

double median_s(const std::function<void()>& fn, int repeat) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < repeat; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
#if DDPM_HAVE_CBLAS
  // OpenBLAS reads OPENBLAS_CORETYPE when it loads: set it and start again.
  if (!std::getenv("OPENBLAS_CORETYPE")) {
    std::ifstream f("/proc/cpuinfo");
    const std::string info((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const char* core = info.find(" avx512f") != std::string::npos ? "SkylakeX"
                       : info.find(" avx2") != std::string::npos  ? "Haswell"
                                                                  : nullptr;
    if (core) {
      setenv("OPENBLAS_CORETYPE", core, 1);
      execv("/proc/self/exe", argv);
    }
  }
#endif
  int threads = 2, repeat = 5;
  ddpm::index_t n = 2048;
  // Each value is range-checked before anything is allocated or timed.
  try {
    for (int i = 1; i < argc; i += 2) {
      const std::string a = argv[i];
      if (i + 1 < argc && a == "--threads") threads = examples::parse_in<int>(a, argv[i + 1], 1, examples::kMaxThreads);
      else if (i + 1 < argc && a == "--size") n = examples::parse_in<ddpm::index_t>(a, argv[i + 1], 1, 16384);
      else if (i + 1 < argc && a == "--repeat") repeat = examples::parse_in<int>(a, argv[i + 1], 1, 1000);
      else {
        std::fprintf(stderr, "usage: %s [--threads N] [--size N] [--repeat R]\n", argv[0]);
        return 2;
      }
    }
  } catch (const ddpm::Error& e) {
    std::fprintf(stderr, "gemm_rate: error: %s\n", e.what());
    return 1;
  }
  using ddpm::backend::Trans;
  namespace ed = ddpm::backend::cpu_detail;
  std::vector<float, ddpm::AlignedAllocator<float>> A(n * n), B(n * n), C(n * n);
  ddpm::Rng rng(1);
  rng.fill_normal(std::span<float>(A));
  rng.fill_normal(std::span<float>(B));
  const double flop = 2.0 * double(n) * double(n) * double(n);
  std::string json = "{\"size\": " + std::to_string(n) + ", \"threads\": " + std::to_string(threads);
  double best = 0;
  auto report = [&](const char* name, double s) {
    const double g = flop / s / 1e9;
    best = std::max(best, g);
    std::printf("%-12s %8.1f GFLOP/s\n", name, g);
    json += ", \"" + std::string(name) + "\": " + std::to_string(g);
  };

  ddpm::backend::Cpu::set_num_threads(1);
  report("eigen-1t", median_s([&] { ed::gemm_serial<float>(Trans::No, Trans::No, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, C.data(), n); }, repeat));
  ddpm::backend::Cpu::set_num_threads(threads);
  report("ddpm-cpu", median_s([&] { ddpm::backend::Cpu::run(ddpm::ops::gemm, Trans::No, Trans::No, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, C.data(), n); }, repeat));
#if DDPM_CPU_PACKED_KERNEL
  {
    std::vector<float, ddpm::AlignedAllocator<float>> Ap(ed::packed_a_size(n, n));
    ed::pack_a(n, n, A.data(), n, false, Ap.data());
    report("ddpm-packed", median_s([&] {
             ed::parallel(threads, [&](int tid, int parts) {
               const auto [c0, c1] = ddpm::split_range(n, parts, tid, 256);
               float* Bp = ed::scratch<float>(ed::kPackB, static_cast<std::size_t>(ed::packed_b_size<float>(n, 256)));
               // A whole (packed once) against 256-column panels of B: the conv kernel's regime.
               for (ddpm::index_t j = c0; j < c1; j += 256) {
                 const ddpm::index_t w = std::min<ddpm::index_t>(256, c1 - j);
                 ed::pack_b(n, w, B.data() + j, n, Bp);
                 ed::packed_gemm(n, w, n, Ap.data(), Bp, C.data() + j, n, false);
               }
             });
           }, repeat));
  }
#endif
#if DDPM_HAVE_CBLAS
  openblas_set_num_threads(threads);
  report("openblas", median_s([&] { cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, C.data(), n); }, repeat));
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  json += ", \"openblas_core\": \"" + std::string(core ? core : "auto") + "\"";
#endif
  json += ", \"machine_gflops\": " + std::to_string(best) + "}";
  std::printf("%s\n", json.c_str());
  return 0;
}
