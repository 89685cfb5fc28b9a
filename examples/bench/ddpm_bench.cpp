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
//
// Autoencoder mode times nn::AutoencoderKL<float, Cpu> built from a diffusers
// AutoencoderKL config.json (weights from a fixed-seed PyTorch-default init),
// batch 1, N x N images, in Mode::Inference:
//
//   ddpm_bench --autoencoder examples/bench/configs/sd_vae.json --size 256 [--threads 2]
//              [--repeat 5] [--tiled [--tile-size P]] [--only encode|decode] [--profile]
//
//   encode_ms   image [1, in_channels, N, N] -> the posterior's moments
//               (encoder, quant_conv, DiagonalGaussian)
//   decode_ms   latent [1, latent_channels, N / f, N / f] -> image
//               (post_quant_conv, decoder); f = 2^(levels - 1)
//   --tiled     encode_tiled / decode_tiled (diffusers' tiled_encode /
//               tiled_decode, overlap 0.25) with tiles of --tile-size image
//               pixels (default: the config's sample_size; a multiple of 4 f)
//   --only      time one phase, so that peak_rss_mb is that phase's alone
// N must be a multiple of f. Medians of --repeat runs after one warm-up, as
// bench_torch.py --autoencoder does. The last line is one JSON object:
//   encode_ms, decode_ms, peak_rss_mb (getrusage), threads, size, tiled,
//   tile_size, params, decode_gflop (2 x multiply-adds of one decode, tiled
//   when timed so, counted on backend::FlopCounter), encode_gflop,
//   gflops_decode, gflops_encode (achieved rates).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/flop_counter.hpp"
#include "ddpm/backend/profiled.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/io/autoencoder_config_json.hpp"
#include "ddpm/io/unet_config_json.hpp"
#include "ddpm/nn/autoencoder_kl.hpp"
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

// 2 x multiply-adds of one AutoencoderKL encode (image N x N) and decode
// (latent N / f x N / f), tiled or not as timed, counted on the FlopCounter
// backend (its buffers are as large as the timed model's: tile-sized when tiled).
std::pair<double, double> autoencoder_flops(const ddpm::nn::AutoencoderKLConfig& c, index_t size, bool tiled,
                                            const ddpm::nn::TileOptions& tiles) {
  ddpm::nn::AutoencoderKL<float, FlopCounter> m(c);
  m.set_mode(ddpm::nn::Mode::Inference);
  const index_t h = size / m.factor();
  ddpm::Tensor<float> x({1, c.in_channels, size, size}), z({1, c.latent_channels, h, h});
  FlopCounter::reset();
  tiled ? (void)m.encode_tiled(x.view(), tiles) : (void)m.encode(x.view());
  const double enc = FlopCounter::flops();
  FlopCounter::reset();
  tiled ? (void)m.decode_tiled(z.view(), tiles) : (void)m.decode(z.view());
  return {enc, FlopCounter::flops()};
}

struct Options {
  std::string config;
  std::string autoencoder;  // --autoencoder CONFIG.json: the autoencoder mode
  index_t size = 0, tile_size = 0;
  bool tiled = false;
  std::string ae_only = "encode,decode";
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

// median_ms, and on a profiled backend the time per op kind over the whole
// phase (warm-up included) on stderr.
template <class Backend>
double timed_ms(const std::string& phase, const std::function<void()>& fn, int repeat) {
  constexpr bool profiled = requires { Backend::report(); };
  if constexpr (profiled) Backend::reset();
  const auto t0 = std::chrono::steady_clock::now();
  const double ms = median_ms(fn, repeat);
  if constexpr (profiled)
    print_profile(phase, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                  Backend::report());
  return ms;
}

// A JSON number ("null" for NaN) and the process's peak resident memory.
std::string json_num(double v) {
  if (std::isnan(v)) return "null";
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}
double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;
}

// Collects "key": value pairs into one JSON object line.
struct JsonLine {
  std::string text = "{";
  void add(const std::string& k, const std::string& v) { text += (text.size() > 1 ? ", \"" : "\"") + k + "\": " + v; }
  std::string str() const { return text + "}"; }
};

[[noreturn]] void usage(const char* argv0, int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: %s CONFIG.json [--threads N] [--repeat R] [--batch B] [--sample-batch S] [--ddim-steps K]\n"
               "       [--only fwd1,fwdS,train,ddim,samplers] [--profile]\n"
               "       %s --autoencoder CONFIG.json --size N [--threads N] [--repeat R] [--tiled [--tile-size P]]\n"
               "       [--only encode|decode] [--profile]\n",
               argv0, argv0);
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

  auto timed = [](const std::string& phase, const std::function<void()>& fn, int repeat) {
    return timed_ms<Backend>(phase, fn, repeat);
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

  const auto num = json_num;
  const double gf = fpi / 1e9;
  JsonLine j;
  auto kv = [&](const std::string& k, const std::string& v) { j.add(k, v); };
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
  kv("peak_rss_mb", num(peak_rss_mb()));
  std::printf("%s\n", j.str().c_str());
  return 0;
}

// --autoencoder: encode and decode of one N x N image (see the header comment).
template <class Backend>
int run_autoencoder(const Options& o) {
  auto want = [&](const char* k) { return ("," + o.ae_only + ",").find(std::string(",") + k + ",") != std::string::npos; };
  Backend::set_num_threads(o.threads);
  const ddpm::nn::AutoencoderKLConfig config = ddpm::io::read_autoencoder_kl_config(o.autoencoder);
  const index_t f = index_t{1} << (config.levels() - 1);
  ddpm::require(o.size % f == 0, "--size: expected a multiple of ", f, " (the downsampling factor of ",
                o.autoencoder, "), got ", o.size);
  ddpm::nn::TileOptions tiles;
  tiles.tile_sample_size = o.tile_size;
  if (o.tiled)  // a bad tile size fails here, before anything is timed
    (void)ddpm::nn::detail::tile_geometry(true, tiles, config.sample_size, f, "--tile-size");
  // Counted first: the counting model's parameters are freed before the timed
  // model is built, so they do not add to peak_rss_mb.
  const auto [enc_flops, dec_flops] = autoencoder_flops(config, o.size, o.tiled, tiles);
  ddpm::nn::AutoencoderKL<float, Backend> vae(config);
  ddpm::Rng rng(0);
  vae.init(rng);
  vae.set_mode(ddpm::nn::Mode::Inference);

  const index_t N = o.size, h = N / f;
  // The median time of the phase on a standard normal input of `shape`.
  auto phase = [&](const char* name, ddpm::Shape shape, auto&& fn) {
    if (!want(name)) return double(NAN);
    ddpm::Tensor<float> in(shape);
    rng.fill_normal(std::span<float>(in.data(), static_cast<std::size_t>(in.numel())));
    const std::string what = std::string(name) + " " + std::to_string(shape[2]) + "x" + std::to_string(shape[3]);
    return timed_ms<Backend>(what, [&] { fn(in.view()); }, o.repeat);
  };
  const double enc = phase("encode", {1, config.in_channels, N, N}, [&](ddpm::ConstTensorView<float> x) {
    o.tiled ? (void)vae.encode_tiled(x, tiles) : (void)vae.encode(x);
  });
  const double dec = phase("decode", {1, config.latent_channels, h, h}, [&](ddpm::ConstTensorView<float> z) {
    o.tiled ? (void)vae.decode_tiled(z, tiles) : (void)vae.decode(z);
  });

  const auto num = json_num;
  JsonLine j;
  j.add("impl", o.profile ? "\"ddpm eigen (profiled)\"" : "\"ddpm eigen\"");
  j.add("config", "\"" + o.autoencoder.substr(o.autoencoder.find_last_of('/') + 1) + "\"");
  j.add("threads", std::to_string(o.threads));
  j.add("size", std::to_string(N));
  j.add("tiled", o.tiled ? "true" : "false");
  j.add("tile_size", o.tiled ? std::to_string(o.tile_size ? o.tile_size : config.sample_size.at(0)) : "null");
  j.add("params", std::to_string(vae.num_parameters()));
  j.add("encode_ms", num(enc));
  j.add("decode_ms", num(dec));
  j.add("encode_gflop", num(enc_flops / 1e9));
  j.add("decode_gflop", num(dec_flops / 1e9));
  j.add("gflops_encode", num(enc_flops / 1e9 / enc * 1e3));
  j.add("gflops_decode", num(dec_flops / 1e9 / dec * 1e3));
  j.add("peak_rss_mb", num(peak_rss_mb()));
  std::printf("%s\n", j.str().c_str());
  return 0;
}

int main(int argc, char** argv) try {
  Options o;
  std::optional<std::string> only;  // checked once the mode is known
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
    else if (a == "--autoencoder") o.autoencoder = next();
    else if (a == "--size") o.size = examples::parse_in<index_t>(a, next(), 1, 4096);
    else if (a == "--tile-size") o.tile_size = examples::parse_in<index_t>(a, next(), 1, 4096);
    else if (a == "--tiled") o.tiled = true;
    else if (a == "--only") only = next();
    else if (a == "--profile") o.profile = true;
    else if (a == "-h" || a == "--help") usage(argv[0], 0);
    else if (!a.empty() && a[0] != '-' && o.config.empty()) o.config = a;
    else usage(argv[0], 2);
  }
  if (only && !o.autoencoder.empty()) {
    o.ae_only = *only;
    ddpm::require(o.ae_only == "encode" || o.ae_only == "decode" || o.ae_only == "encode,decode",
                  "--only: expected encode or decode with --autoencoder, got '", o.ae_only, "'");
  } else if (only) {
    o.only = *only;
    for (std::size_t p = 0; p <= o.only.size();) {
      const auto q = std::min(o.only.find(',', p), o.only.size());
      const std::string k = o.only.substr(p, q - p);
      ddpm::require(k == "fwd1" || k == "fwdS" || k == "train" || k == "ddim" || k == "samplers",
                    "--only: expected a comma-separated list of fwd1, fwdS, train, ddim, samplers, got '", o.only,
                    "'");
      p = q + 1;
    }
  }
  if (!o.autoencoder.empty()) {
    ddpm::require(o.config.empty(), "--autoencoder: give no U-Net config with it, got '", o.config, "'");
    ddpm::require(o.size > 0, "--autoencoder: --size N (the image size) is needed");
    return o.profile ? run_autoencoder<ddpm::backend::Profiled<ddpm::backend::Cpu>>(o)
                     : run_autoencoder<ddpm::backend::Cpu>(o);
  }
  ddpm::require(o.size == 0 && !o.tiled && o.tile_size == 0, "--size, --tiled, --tile-size: only with --autoencoder");
  if (o.config.empty()) usage(argv[0], 2);
  return o.profile ? run<ddpm::backend::Profiled<ddpm::backend::Cpu>>(o) : run<ddpm::backend::Cpu>(o);
} catch (const std::exception& e) {
  std::fprintf(stderr, "ddpm_bench: %s\n", e.what());
  return 1;
}
