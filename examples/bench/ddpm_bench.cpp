// ddpm_bench: times nn::UNet2D<float, backend::Cpu> on a diffusers
// config.json with the same cases and definitions as
// examples/bench/bench_torch.py, for side-by-side comparison.
//
//   ddpm_bench examples/bench/configs/mnist.json --threads 2 [--repeat 5] [--batch 32]
//              [--sample-batch 16] [--ddim-steps 20] [--only fwd1,fwdS,train,ddim,samplers] [--profile]
//
// `samplers` (not in the default list) times one step of every registered
// sampler on a batch of --sample-batch images, 50 steps, the model replaced by
// a fixed output, against one forward of that batch.
//
// --profile runs the model on backend::Profiled<Cpu> and prints, per phase on
// stderr, the wall time of every backend op kind and the time outside them
// (the timer adds a clock read per op: compare profiled runs with each other).
//
// The last line printed is one JSON object:
//   params, forward_ms_b1, forward_ms_b{S}, train_step_ms, ddim_ms,
//   train_images_per_s, sample_images_per_s   (as bench_torch.py)
//   forward_gflop_per_image   the forward cost of one image (2 x multiply-adds
//                             of every conv, linear and attention GEMM, counted
//                             by running the model on a counting backend)
//   gflops_forward_b1, gflops_forward_b{S}    achieved rate of those forwards
//   gflops_train              3 x forward cost x batch / train_step_ms
//                             (backward = 2 forwards, the usual convention)
//   gflops_ddim               ddim_steps x S x forward cost / ddim_ms
//   peak_rss_mb               the process's peak resident memory (getrusage)
// Every time is the median of --repeat timed runs after one warm-up; ddim_ms
// uses max(1, repeat / 2) runs, exactly as bench_torch.py does.
//
//   forward_ms_*   UNet2D forward in Mode::Inference (nothing saved for backward)
//   train_step_ms  zero_grad, forward, MSE loss (train/loss.hpp), backward,
//                  Adam (train/adam.hpp, lr 1e-4) at batch --batch: what
//                  torch's opt.zero_grad / mse_loss / backward / opt.step do
//   ddim_ms        a whole --ddim-steps DDIM (eta 0) loop at batch S: the
//                  library's DDIMSampler and sample_loop, with the timesteps
//                  999, 949, ... and the update of bench_torch.py
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/flop_counter.hpp"
#include "ddpm/backend/profiled.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/io/unet_config_json.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "ddpm/sampling/ddim.hpp"
#include "ddpm/sampling/loop.hpp"
#include "ddpm/sampling/registry.hpp"
#include "ddpm/train/adam.hpp"
#include "ddpm/train/loss.hpp"
#include "../common/range.hpp"

namespace {

using ddpm::index_t;

using ddpm::backend::FlopCounter;

double forward_flops_per_image(const ddpm::nn::UNet2DConfig& c, index_t size) {
  ddpm::nn::UNet2D<float, FlopCounter> m(c);
  m.set_mode(ddpm::nn::Mode::Inference);
  ddpm::Tensor<float> x({1, c.in_channels, size, size});
  std::vector<std::int64_t> labels(c.num_class_embeds ? 1 : 0, 0);
  FlopCounter::reset();
  m.forward(x.view(), 500.0, labels);
  return FlopCounter::flops();
}

struct Options {
  std::string config;
  int threads = 2;
  index_t batch = 32, sample_batch = 16;
  int ddim_steps = 20, repeat = 5;
  std::string only = "fwd1,fwdS,train,ddim";
  bool profile = false;
};

double median_ms(const std::function<void()>& fn, int repeat) {
  fn();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < repeat; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  const std::size_t n = t.size();
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

// The --profile table: wall time per op kind, and the rest (nn/ and train/ loops).
void print_profile(const std::string& phase, double total_s, const std::vector<ddpm::backend::OpTime>& ops) {
  std::fprintf(stderr, "profile: %s, %.1f ms in all\n", phase.c_str(), total_s * 1e3);
  double in_ops = 0;
  for (const auto& r : ops) {
    in_ops += r.seconds;
    std::fprintf(stderr, "  %-22.*s %7lld calls %10.1f ms %5.1f%%\n", static_cast<int>(r.name.size()), r.name.data(),
                 r.calls, r.seconds * 1e3, 100 * r.seconds / total_s);
  }
  std::fprintf(stderr, "  %-22s %7s       %10.1f ms %5.1f%%\n", "outside backend ops", "", (total_s - in_ops) * 1e3,
               100 * (total_s - in_ops) / total_s);
}

[[noreturn]] void usage(const char* argv0, int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: %s CONFIG.json [--threads N] [--repeat R] [--batch B] [--sample-batch S] [--ddim-steps K]\n"
               "       [--only fwd1,fwdS,train,ddim,samplers] [--profile]\n",
               argv0);
  std::exit(code);
}

}  // namespace

template <class Backend>
int run(const Options& o) {
  auto want = [&](const char* k) { return ("," + o.only + ",").find(std::string(",") + k + ",") != std::string::npos; };

  Backend::set_num_threads(o.threads);
  const ddpm::nn::UNet2DConfig config = ddpm::io::read_unet2d_config(o.config);
  const index_t c = config.in_channels, s = config.sample_size.at(0);
  const bool has_labels = config.num_class_embeds.has_value();
  using UNet = ddpm::nn::UNet2D<float, Backend>;
  UNet model(config);
  ddpm::Rng rng(0);
  model.init(rng);
  const double fpi = forward_flops_per_image(config, s);

  auto randn = [&](index_t n) {
    ddpm::Tensor<float> x({n, c, s, s});
    rng.fill_normal(std::span<float>(x.data(), static_cast<std::size_t>(x.numel())));
    return x;
  };
  auto randt = [&](index_t n) {
    std::vector<double> t(static_cast<std::size_t>(n));
    for (auto& v : t) v = static_cast<double>(rng.uniform_int(1000));
    return t;
  };
  auto labels = [&](index_t n) { return std::vector<std::int64_t>(has_labels ? static_cast<std::size_t>(n) : 0, 0); };

  // median_ms, and with --profile the time per op kind over the whole phase
  // (warm-up included) on stderr.
  auto timed = [&](const std::string& phase, const std::function<void()>& fn, int repeat) {
    constexpr bool profiled = requires { Backend::report(); };
    if constexpr (profiled) Backend::reset();
    const auto t0 = std::chrono::steady_clock::now();
    const double ms = median_ms(fn, repeat);
    if constexpr (profiled)
      print_profile(phase, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                    Backend::report());
    return ms;
  };

  auto forward_ms = [&](index_t n) {
    const auto x = randn(n);
    const auto t = randt(n);
    const auto y = labels(n);
    model.set_mode(ddpm::nn::Mode::Inference);
    return timed("forward, batch " + std::to_string(n), [&] { model.forward(x.view(), t, y); }, o.repeat);
  };

  const index_t S = o.sample_batch;
  const std::string fS = "forward_ms_b" + std::to_string(S);
  double f1 = NAN, fs = NAN, train = NAN, ddim = NAN;
  if (want("fwd1")) f1 = forward_ms(1);
  if (want("fwdS")) fs = forward_ms(S);

  if (want("train")) {
    ddpm::train::Adam<float> adam(model.num_parameters(), ddpm::train::AdamConfig{});
    const auto xb = randn(o.batch), target = randn(o.batch);
    const auto tb = randt(o.batch);
    const auto yb = labels(o.batch);
    ddpm::Tensor<float> dpred({o.batch, config.out_channels, s, s});
    model.set_mode(ddpm::nn::Mode::Training);
    train = timed(
        "train step, batch " + std::to_string(o.batch),
        [&] {
          auto& p = model.parameters();
          p.zero_grad();
          const auto pred = model.forward(xb.view(), tb, yb);
          ddpm::train::weighted_mse<float>(pred, target.view(), {}, dpred.view());
          model.backward(dpred.view());
          adam.step(p.values(), p.grads(), 1e-4);
        },
        o.repeat);
  }

  if (want("ddim")) {
    // The library's DDIMSampler as bench_torch.py's loop: linear betas, eta 0,
    // no clipping, timesteps 999, 949, ... (trailing spacing; the same list
    // when --ddim-steps divides 1000), final alpha-bar 1.
    ddpm::DDIMConfig ddim_config;
    ddim_config.clipping.clip_sample = false;
    ddim_config.timesteps.spacing = ddpm::TimestepSpacing::trailing;
    ddpm::DDIMSampler<float> sampler(ddim_config);
    sampler.set_timesteps(o.ddim_steps);
    const auto y = labels(S);
    const auto unet = [&](ddpm::ConstTensorView<float> x, double t) { return model.forward(x, t, y); };
    ddpm::Tensor<float> noise({S, c, s, s});
    model.set_mode(ddpm::nn::Mode::Inference);
    ddim = timed(
        "DDIM loop, batch " + std::to_string(S),
        [&] {
          rng.fill_normal(std::span<float>(noise.data(), static_cast<std::size_t>(noise.numel())));
          (void)ddpm::sample_loop(sampler, unet, noise.cview());
        },
        std::max(1, o.repeat / 2));
  }

  // Sampler overhead: every registered sampler's step on a batch of S images
  // (the model replaced by a fixed output), against one batch-S forward.
  double worst_step_us = NAN, worst_pct = NAN;
  if (want("samplers")) {
    if (std::isnan(fs)) fs = forward_ms(S);
    const auto out = randn(S), x_T = randn(S);
    const auto fixed = [&](ddpm::ConstTensorView<float>, double) { return out.cview(); };
    worst_step_us = 0;
    const auto pool = ddpm::backend::Cpu::thread_pool();
    ddpm::Samplers::for_each_sampler<float>([&]<class Traits, class Smp>(std::type_identity<Traits>, std::type_identity<Smp>) {
      Smp sampler{typename Traits::config_type{}};
      sampler.set_timesteps(50);
      const double steps = static_cast<double>(sampler.timesteps().size());
      const double ms = median_ms(
          [&] {
            sampler.set_timesteps(50);
            (void)ddpm::sample_loop(sampler, fixed, x_T.cview(), ddpm::NoiseSource<float>(rng, *pool));
          },
          o.repeat);
      const double us = ms * 1e3 / steps;
      std::fprintf(stderr, "sampler %-13.*s %8.1f us a step (batch %lld): %.3f%% of a batch-%lld forward\n",
                   static_cast<int>(Traits::name.size()), Traits::name.data(), us, static_cast<long long>(S),
                   100.0 * us / (fs * 1e3), static_cast<long long>(S));
      worst_step_us = std::max(worst_step_us, us);
    });
    worst_pct = 100.0 * worst_step_us / (fs * 1e3);
  }

  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto num = [](double v) -> std::string {
    if (std::isnan(v)) return "null";
    char b[64];
    std::snprintf(b, sizeof b, "%.6g", v);
    return b;
  };
  const double gf = fpi / 1e9;
  std::string j = "{";
  auto kv = [&](const std::string& k, const std::string& v) { j += (j.size() > 1 ? ", \"" : "\"") + k + "\": " + v; };
  kv("impl", o.profile ? "\"ddpm eigen (profiled)\"" : "\"ddpm eigen\"");
  kv("config", "\"" + o.config.substr(o.config.find_last_of('/') + 1) + "\"");
  kv("threads", std::to_string(o.threads));
  kv("params", std::to_string(model.num_parameters()));
  kv("forward_ms_b1", num(f1));
  kv(fS, num(fs));
  kv("train_step_ms", num(train));
  kv("ddim_ms", num(ddim));
  kv("batch", std::to_string(o.batch));
  kv("sample_batch", std::to_string(S));
  kv("ddim_steps", std::to_string(o.ddim_steps));
  kv("train_images_per_s", num(double(o.batch) / train * 1e3));
  kv("sample_images_per_s", num(double(S) / ddim * 1e3));
  kv("forward_gflop_per_image", num(gf));
  kv("gflops_forward_b1", num(gf / f1 * 1e3));
  kv("gflops_forward_b" + std::to_string(S), num(gf * double(S) / fs * 1e3));
  kv("gflops_train", num(3 * gf * double(o.batch) / train * 1e3));
  kv("gflops_ddim", num(gf * double(S) * o.ddim_steps / ddim * 1e3));
  kv("sampler_step_us_max", num(worst_step_us));
  kv("sampler_step_pct_of_forward", num(worst_pct));
  kv("peak_rss_mb", num(double(ru.ru_maxrss) / 1024.0));
  j += "}";
  std::printf("%s\n", j.c_str());
  return 0;
}

int main(int argc, char** argv) try {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(argv[0], 2);
      return argv[++i];
    };
    // Each value is range-checked here, before the model is built: a bad one
    // ends the run with "ddpm_bench: --flag: expected ..., got ...".
    if (a == "--threads") o.threads = examples::parse_in<int>(a, next(), 1, examples::kMaxThreads);
    else if (a == "--repeat") o.repeat = examples::parse_in<int>(a, next(), 1, 1000);
    else if (a == "--batch") o.batch = examples::parse_in<index_t>(a, next(), 1, 4096);
    else if (a == "--sample-batch") o.sample_batch = examples::parse_in<index_t>(a, next(), 1, 4096);
    else if (a == "--ddim-steps") o.ddim_steps = examples::parse_in<int>(a, next(), 1, 1000);
    else if (a == "--only") {
      o.only = next();
      for (std::size_t p = 0; p <= o.only.size();) {
        const auto q = std::min(o.only.find(',', p), o.only.size());
        const std::string k = o.only.substr(p, q - p);
        ddpm::require(k == "fwd1" || k == "fwdS" || k == "train" || k == "ddim" || k == "samplers",
                      "--only: expected a comma-separated list of fwd1, fwdS, train, ddim, samplers, got '", o.only,
                      "'");
        p = q + 1;
      }
    }
    else if (a == "--profile") o.profile = true;
    else if (a == "-h" || a == "--help") usage(argv[0], 0);
    else if (!a.empty() && a[0] != '-' && o.config.empty()) o.config = a;
    else usage(argv[0], 2);
  }
  if (o.config.empty()) usage(argv[0], 2);
  return o.profile ? run<ddpm::backend::Profiled<ddpm::backend::Cpu>>(o) : run<ddpm::backend::Cpu>(o);
} catch (const std::exception& e) {
  std::fprintf(stderr, "ddpm_bench: %s\n", e.what());
  return 1;
}
