#pragma once
// The subcommands of mnist_diffusion: option parsing, then a call into the
// header that does the work.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "ddpm/io/diffusers.hpp"
#include "ddpm/io/idx.hpp"
#include "ddpm/io/image.hpp"
#include "../common/cli.hpp"
#include "generate.hpp"
#include "classifier.hpp"
#include "tasks.hpp"
#include "train.hpp"

#ifndef DDPM_EXAMPLES_DIR
#define DDPM_EXAMPLES_DIR "examples"
#endif

namespace mnist {

struct Command {
  const char* name;
  int (*run)(int argc, char** argv);
};

// The shipped model unless --model is given.
inline fs::path default_model_dir() {
  const fs::path built_in = fs::path(DDPM_EXAMPLES_DIR) / "models" / "mnist_cond";
  if (fs::exists(built_in / "config.json")) return built_in;
  return fs::path("examples") / "models" / "mnist_cond";
}

inline UNet load_model(const std::string& dir) {
  const fs::path d = dir.empty() ? default_model_dir() : fs::path(dir);
  auto unet = ddpm::io::load_unet2d<float, ddpm::backend::Eigen>(d);
  unet.set_mode(ddpm::nn::Mode::Inference);
  return unet;
}

// Options every generating command shares.
inline void add_common(cxxopts::Options& opts) {
  opts.add_options("common")
      ("model", "diffusers model folder (default: the shipped examples/models/mnist_cond)",
       cxxopts::value<std::string>()->default_value(""))
      ("threads", "CPU threads", cxxopts::value<int>()->default_value("2"))
      ("h,help", "this help");
}

inline bool wants_help(cxxopts::Options& opts, const cxxopts::ParseResult& r) {
  if (!r.count("help")) return false;
  std::fputs(opts.help().c_str(), stdout);
  return true;
}

inline int cmd_train(int argc, char** argv) {
  cxxopts::Options opts(argv[0], "Train the class-conditional U-Net on MNIST-style IDX data.");
  TrainOptions d;
  opts.add_options()
      ("data", "folder with train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]",
       cxxopts::value<std::string>()->default_value(d.data.string()))
      ("out", "output folder: checkpoint.safetensors, model/ (EMA weights), samples_*.png",
       cxxopts::value<std::string>()->default_value(d.out.string()))
      ("steps", "training steps", cxxopts::value<std::int64_t>()->default_value(std::to_string(d.steps)))
      ("batch", "batch size", cxxopts::value<ddpm::index_t>()->default_value(std::to_string(d.batch)))
      ("lr", "peak learning rate (warm-up, then cosine decay to 5%)", cxxopts::value<double>()->default_value("0.0015"))
      ("width", "channels of the first U-Net level (then 2x, 4x)", cxxopts::value<int>()->default_value("16"))
      ("ema-decay", "EMA decay", cxxopts::value<double>()->default_value("0.999"))
      ("label-dropout", "probability of training with the null label (for guidance)",
       cxxopts::value<double>()->default_value("0.1"))
      ("checkpoint-every", "steps between checkpoints", cxxopts::value<std::int64_t>()->default_value("200"))
      ("sample-every", "steps between sample grids (0: never)", cxxopts::value<std::int64_t>()->default_value("500"))
      ("seed", "random seed", cxxopts::value<std::uint64_t>()->default_value("0"))
      ("resume", "continue from <out>/checkpoint.safetensors")
      ("threads", "CPU threads", cxxopts::value<int>()->default_value("2"))
      ("h,help", "this help");
  const auto r = opts.parse(argc, argv);
  if (wants_help(opts, r)) return 0;
  examples::set_threads(r["threads"].as<int>());
  TrainOptions o;
  o.data = r["data"].as<std::string>();
  o.out = r["out"].as<std::string>();
  o.steps = r["steps"].as<std::int64_t>();
  o.batch = r["batch"].as<ddpm::index_t>();
  o.lr = r["lr"].as<double>();
  o.width = r["width"].as<int>();
  o.ema_decay = r["ema-decay"].as<double>();
  o.label_dropout = r["label-dropout"].as<double>();
  o.checkpoint_every = r["checkpoint-every"].as<std::int64_t>();
  o.sample_every = r["sample-every"].as<std::int64_t>();
  o.seed = r["seed"].as<std::uint64_t>();
  o.resume = r.count("resume") > 0;
  ddpm::require(o.steps > 0 && o.batch > 0 && o.checkpoint_every > 0, "--steps, --batch and --checkpoint-every must be > 0");
  return train(o);
}

// Defaults: what the shipped model was measured with (README): ancestral
// DDPM sampling, 30 steps, guidance scale 6.
inline void add_sampling(cxxopts::Options& opts, const char* steps = "30") {
  opts.add_options("sampling")
      ("sampler", "ddpm, ddim or dpm++", cxxopts::value<std::string>()->default_value("ddpm"))
      ("steps", "sampling steps", cxxopts::value<ddpm::index_t>()->default_value(steps))
      ("guidance", "classifier-free guidance scale (1: none)", cxxopts::value<double>()->default_value("6"))
      ("seed", "random seed", cxxopts::value<std::uint64_t>()->default_value("0"));
}

inline GenerateOptions generate_options(const cxxopts::ParseResult& r) {
  GenerateOptions g;
  g.sampler = r["sampler"].as<std::string>();
  g.steps = r["steps"].as<ddpm::index_t>();
  g.guidance = r["guidance"].as<double>();
  g.seed = r["seed"].as<std::uint64_t>();
  return g;
}

// Writes a PNG grid (.png) or IDX3 unsigned bytes (.idx).
inline void write_images(const fs::path& out, ddpm::ConstTensorView<float> images, int columns) {
  if (!out.parent_path().empty()) fs::create_directories(out.parent_path());
  const auto ext = out.extension().string();
  if (ext == ".png")
    ddpm::io::write_png(out, ddpm::io::make_grid(images, columns));
  else if (ext == ".idx" || ext == ".idx3")
    ddpm::io::write_idx_images(out, images);
  else
    ddpm::fail("--out: ", out.string(), ": expected a .png or .idx file name");
}

inline int cmd_sample(int argc, char** argv) {
  cxxopts::Options opts(argv[0], "Generate digits with the class-conditional model.");
  opts.add_options()
      ("label", "digit 0-9 to generate (default: mixed labels, row r of the grid is digit r mod 10)", cxxopts::value<int>())
      ("count", "number of digits", cxxopts::value<ddpm::index_t>()->default_value("100"))
      ("columns", "PNG grid columns", cxxopts::value<int>()->default_value("10"))
      ("out", "output .png (grid) or .idx (IDX3 unsigned bytes, N x 28 x 28)",
       cxxopts::value<std::string>()->default_value("samples.png"));
  add_sampling(opts);
  add_common(opts);
  const auto r = opts.parse(argc, argv);
  if (wants_help(opts, r)) return 0;
  examples::set_threads(r["threads"].as<int>());
  auto unet = load_model(r["model"].as<std::string>());
  const auto count = r["count"].as<ddpm::index_t>();
  const int columns = r["columns"].as<int>();
  ddpm::require(count > 0 && columns > 0, "--count and --columns must be > 0");
  std::vector<std::int64_t> labels(static_cast<std::size_t>(count));
  for (ddpm::index_t i = 0; i < count; ++i) {
    if (r.count("label")) {
      const int k = r["label"].as<int>();
      ddpm::require(k >= 0 && k < kNumClasses, "--label must be in 0..9, got ", k);
      labels[static_cast<std::size_t>(i)] = k;
    } else {
      labels[static_cast<std::size_t>(i)] = (i / columns) % kNumClasses;  // row r of the grid: digit r mod 10
    }
  }
  const auto o = generate_options(r);
  const auto images = generate(unet, labels, o);
  write_images(r["out"].as<std::string>(), images.cview(), columns);
  std::printf("wrote %lld digits (%s, %lld steps, guidance %g) to %s\n", static_cast<long long>(count),
              o.sampler.c_str(), static_cast<long long>(o.steps), o.guidance, r["out"].as<std::string>().c_str());
  return 0;
}

// Test digits [first, first + count) of the held-out split.
inline Dataset test_digits(const std::string& data, ddpm::index_t first, ddpm::index_t count) {
  Dataset all = load_split(data, "t10k");
  ddpm::require(first >= 0 && count > 0 && first + count <= all.size(), "--first/--count: the test split has ",
                all.size(), " digits");
  Dataset d;
  d.images = ddpm::Tensor<float>::copy_of(all.images.cview().slice(first, count));
  d.labels.assign(all.labels.begin() + first, all.labels.begin() + first + count);
  return d;
}

inline void add_test_data(cxxopts::Options& opts, const char* count) {
  opts.add_options("data")
      ("data", "folder with t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]",
       cxxopts::value<std::string>()->default_value("data/mnist"))
      ("first", "index of the first test digit", cxxopts::value<ddpm::index_t>()->default_value("0"))
      ("count", "number of test digits", cxxopts::value<ddpm::index_t>()->default_value(count));
}

inline int cmd_denoise(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "Add Gaussian noise to test digits and denoise them by entering the reverse process at the\n"
                        "timestep whose noise level matches sigma (SDEdit). Prints PSNR before and after; writes a\n"
                        "PNG with rows clean / noisy / denoised.");
  opts.add_options()
      ("sigma", "noise standard deviation, in the [-1, 1] units of the data", cxxopts::value<double>()->default_value("0.5"))
      ("sampler", "ddpm, ddim or dpm++", cxxopts::value<std::string>()->default_value("ddim"))
      ("steps", "sampler steps over the whole schedule (fewer are run: those below sigma)",
       cxxopts::value<ddpm::index_t>()->default_value("50"))
      ("seed", "random seed", cxxopts::value<std::uint64_t>()->default_value("0"))
      ("out", "output PNG", cxxopts::value<std::string>()->default_value("denoise.png"));
  add_test_data(opts, "10");
  add_common(opts);
  const auto r = opts.parse(argc, argv);
  if (wants_help(opts, r)) return 0;
  examples::set_threads(r["threads"].as<int>());
  auto unet = load_model(r["model"].as<std::string>());
  const Dataset d = test_digits(r["data"].as<std::string>(), r["first"].as<ddpm::index_t>(), r["count"].as<ddpm::index_t>());
  const double sigma = r["sigma"].as<double>();
  const auto res = denoise(unet, d.images.cview(), sigma, r["sampler"].as<std::string>(),
                           r["steps"].as<ddpm::index_t>(), r["seed"].as<std::uint64_t>());
  const auto grid = stack_rows({d.images.cview(), res.noisy.cview(), res.denoised.cview()});
  write_images(r["out"].as<std::string>(), grid.cview(), static_cast<int>(d.size()));
  std::printf("sigma %.2f: PSNR noisy %.2f dB -> denoised %.2f dB (%lld test digits); wrote %s\n", sigma,
              res.psnr_noisy, res.psnr_denoised, static_cast<long long>(d.size()), r["out"].as<std::string>().c_str());
  return 0;
}

inline int cmd_inpaint(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "Hide a region of test digits and fill it with the model (RePaint). Writes a PNG with rows\n"
                        "original / masked / inpainted.");
  opts.add_options()
      ("region", "x,y,w,h of the rectangle to fill", cxxopts::value<std::string>()->default_value("0,14,28,14"))
      ("mask", "28x28 mask image instead of --region: white (>= 128) = fill, black = keep",
       cxxopts::value<std::string>()->default_value(""))
      ("label", "condition on this digit (default: unconditional, the model infers it)", cxxopts::value<int>()->default_value("-1"))
      ("sampler", "ddpm or ddim", cxxopts::value<std::string>()->default_value("ddpm"))
      ("steps", "sampler steps", cxxopts::value<ddpm::index_t>()->default_value("30"))
      ("resample", "RePaint resampling: model evaluations per step", cxxopts::value<ddpm::index_t>()->default_value("3"))
      ("seed", "random seed", cxxopts::value<std::uint64_t>()->default_value("0"))
      ("out", "output PNG", cxxopts::value<std::string>()->default_value("inpaint.png"));
  add_test_data(opts, "10");
  add_common(opts);
  const auto r = opts.parse(argc, argv);
  if (wants_help(opts, r)) return 0;
  examples::set_threads(r["threads"].as<int>());
  auto unet = load_model(r["model"].as<std::string>());
  const Dataset d = test_digits(r["data"].as<std::string>(), r["first"].as<ddpm::index_t>(), r["count"].as<ddpm::index_t>());
  ddpm::Tensor<float> mask;
  if (const auto file = r["mask"].as<std::string>(); !file.empty()) {
    const auto img = ddpm::io::load_image(file, 1);
    ddpm::require(img.width == 28 && img.height == 28, file, ": the mask must be 28x28, got ", img.width, "x", img.height);
    mask = ddpm::Tensor<float>({1, 1, 28, 28});
    for (int i = 0; i < 784; ++i) mask[i] = img.pixels[static_cast<std::size_t>(i)] >= 128 ? 0.f : 1.f;
  } else {
    int x = 0, y = 0, w = 0, h = 0;
    const auto reg = r["region"].as<std::string>();
    ddpm::require(std::sscanf(reg.c_str(), "%d,%d,%d,%d", &x, &y, &w, &h) == 4, "--region: expected x,y,w,h, got '", reg, "'");
    mask = rectangle_mask(x, y, w, h);
  }
  const auto filled = inpaint(unet, d.images.cview(), mask.cview(), r["sampler"].as<std::string>(),
                              r["steps"].as<ddpm::index_t>(), r["resample"].as<ddpm::index_t>(), r["label"].as<int>(),
                              r["seed"].as<std::uint64_t>());
  ddpm::Tensor<float> masked = d.images;  // the hidden part shown mid-grey
  for (ddpm::index_t i = 0; i < masked.numel(); ++i)
    if (mask[i % 784] < 0.5f) masked[i] = 0.f;
  const auto grid = stack_rows({d.images.cview(), masked.cview(), filled.cview()});
  write_images(r["out"].as<std::string>(), grid.cview(), static_cast<int>(d.size()));
  std::printf("inpainted %lld test digits; PSNR of the filled image vs the original %.2f dB; wrote %s\n",
              static_cast<long long>(d.size()), psnr(filled.cview(), d.images.cview()), r["out"].as<std::string>().c_str());
  return 0;
}

inline int cmd_trajectory(int argc, char** argv) {
  cxxopts::Options opts(argv[0], "Write x_t along the reverse process, from noise to digit, as a PNG (one row per digit).");
  opts.add_options()
      ("label", "digit to generate (default: one row per digit 0-9)", cxxopts::value<int>())
      ("snapshots", "columns: x_T, ..., x_0", cxxopts::value<int>()->default_value("11"))
      ("out", "output PNG", cxxopts::value<std::string>()->default_value("trajectory.png"));
  add_sampling(opts);
  add_common(opts);
  const auto r = opts.parse(argc, argv);
  if (wants_help(opts, r)) return 0;
  examples::set_threads(r["threads"].as<int>());
  auto unet = load_model(r["model"].as<std::string>());
  auto o = generate_options(r);
  const int snaps = r["snapshots"].as<int>();
  ddpm::require(snaps >= 2 && snaps <= o.steps + 1, "--snapshots must be in [2, steps + 1]");
  std::vector<std::int64_t> labels;
  if (r.count("label")) labels.push_back(r["label"].as<int>());
  else for (int k = 0; k < kNumClasses; ++k) labels.push_back(k);
  const auto strip = trajectory(unet, labels, snaps, o);
  write_images(r["out"].as<std::string>(), strip.cview(), snaps);
  std::printf("wrote %zu trajectories of %d snapshots (%s, %lld steps) to %s\n", labels.size(), snaps, o.sampler.c_str(),
              static_cast<long long>(o.steps), r["out"].as<std::string>().c_str());
  return 0;
}

inline int cmd_classifier(int argc, char** argv) {
  cxxopts::Options opts(argv[0], "Train the small CNN digit classifier that evaluate uses; prints its held-out accuracy.");
  opts.add_options()
      ("data", "folder with the train and t10k IDX files", cxxopts::value<std::string>()->default_value("data/mnist"))
      ("epochs", "training epochs", cxxopts::value<int>()->default_value("4"))
      ("seed", "random seed", cxxopts::value<std::uint64_t>()->default_value("0"))
      ("out", "where to save the weights", cxxopts::value<std::string>()->default_value("out/mnist_classifier.safetensors"))
      ("threads", "CPU threads", cxxopts::value<int>()->default_value("2"))
      ("h,help", "this help");
  const auto r = opts.parse(argc, argv);
  if (wants_help(opts, r)) return 0;
  examples::set_threads(r["threads"].as<int>());
  const Dataset train = load_split(r["data"].as<std::string>(), "train");
  const Dataset test = load_split(r["data"].as<std::string>(), "t10k");
  Classifier net;
  train_classifier(net, train, {.epochs = r["epochs"].as<int>(), .seed = r["seed"].as<std::uint64_t>()});
  const auto pred = classify(net, test.images.cview());
  const fs::path out = r["out"].as<std::string>();
  if (!out.parent_path().empty()) fs::create_directories(out.parent_path());
  net.save(out);
  std::printf("classifier: held-out accuracy %.2f%% on %lld test digits; saved %s\n", 100.0 * accuracy(pred, test.labels),
              static_cast<long long>(test.size()), out.string().c_str());
  return 0;
}

inline std::vector<double> parse_list(const std::string& s) {
  std::vector<double> v;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    const auto comma = s.find(',', pos);
    v.push_back(std::stod(s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos)));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return v;
}

inline int cmd_evaluate(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "Measure the model with the digit classifier: (a) the fraction of class-conditional samples\n"
                        "classified as the requested digit, (b) the Frechet distance between classifier features of\n"
                        "samples and of held-out digits, (c) denoising PSNR at several sigmas.");
  opts.add_options()
      ("data", "folder with the train and t10k IDX files", cxxopts::value<std::string>()->default_value("data/mnist"))
      ("classifier", "classifier weights (from `classifier`)",
       cxxopts::value<std::string>()->default_value("out/mnist_classifier.safetensors"))
      ("per-class", "samples per digit", cxxopts::value<ddpm::index_t>()->default_value("50"))
      ("guidance", "guidance scales to measure, comma-separated", cxxopts::value<std::string>()->default_value("6"))
      ("sampler", "ddpm, ddim or dpm++", cxxopts::value<std::string>()->default_value("ddpm"))
      ("steps", "sampling steps", cxxopts::value<ddpm::index_t>()->default_value("30"))
      ("sigmas", "denoising noise levels, comma-separated (empty: skip)", cxxopts::value<std::string>()->default_value("0.2,0.5,1.0"))
      ("denoise-count", "test digits to denoise", cxxopts::value<ddpm::index_t>()->default_value("200"))
      ("seed", "random seed", cxxopts::value<std::uint64_t>()->default_value("0"));
  add_common(opts);
  const auto r = opts.parse(argc, argv);
  if (wants_help(opts, r)) return 0;
  examples::set_threads(r["threads"].as<int>());
  auto unet = load_model(r["model"].as<std::string>());
  const Dataset train = load_split(r["data"].as<std::string>(), "train");
  const Dataset test = load_split(r["data"].as<std::string>(), "t10k");
  Classifier net;
  net.load(r["classifier"].as<std::string>());
  ddpm::Tensor<float> test_features, train_features;
  const auto test_pred = classify(net, test.images.cview(), &test_features);
  std::printf("classifier held-out accuracy: %.2f%% (%lld test digits)\n", 100.0 * accuracy(test_pred, test.labels),
              static_cast<long long>(test.size()));
  // The floor of the distance: real training digits against real test digits.
  const ddpm::index_t per_class = r["per-class"].as<ddpm::index_t>(), n = per_class * kNumClasses;
  const ddpm::index_t ref_n = std::min(n, train.size());
  classify(net, train.images.cview().slice(0, ref_n), &train_features);
  std::printf("Frechet distance, %lld real training digits vs held-out digits: %.3f (the floor)\n",
              static_cast<long long>(ref_n), frechet_distance(train_features.cview(), test_features.cview()));

  std::vector<std::int64_t> labels(static_cast<std::size_t>(n));
  for (ddpm::index_t i = 0; i < n; ++i) labels[static_cast<std::size_t>(i)] = i % kNumClasses;
  for (double w : parse_list(r["guidance"].as<std::string>())) {
    GenerateOptions o;
    o.sampler = r["sampler"].as<std::string>();
    o.steps = r["steps"].as<ddpm::index_t>();
    o.guidance = w;
    o.seed = r["seed"].as<std::uint64_t>();
    const auto t0 = std::chrono::steady_clock::now();
    const auto samples = generate(unet, labels, o);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ddpm::Tensor<float> f;
    const auto pred = classify(net, samples.cview(), &f);
    std::printf("guidance %.1f (%s, %lld steps, %lld samples in %.0fs): classified as the requested digit %.1f%%, "
                "Frechet distance %.3f\n  per digit:",
                w, o.sampler.c_str(), static_cast<long long>(o.steps), static_cast<long long>(n), secs,
                100.0 * accuracy(pred, labels), frechet_distance(f.cview(), test_features.cview()));
    for (int k = 0; k < kNumClasses; ++k) {
      int ok = 0, tot = 0;
      for (std::size_t i = 0; i < labels.size(); ++i)
        if (labels[i] == k) ++tot, ok += pred[i] == k;
      std::printf(" %d:%.0f%%", k, 100.0 * ok / std::max(tot, 1));
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  if (const auto sig = r["sigmas"].as<std::string>(); !sig.empty()) {
    const ddpm::index_t count = std::min(r["denoise-count"].as<ddpm::index_t>(), test.size());
    const auto clean = test.images.cview().slice(0, count);
    for (double sigma : parse_list(sig)) {
      const auto res = denoise(unet, clean, sigma, "ddim", 50, r["seed"].as<std::uint64_t>());
      std::printf("denoising sigma %.1f (%lld test digits, DDIM): PSNR noisy %.2f dB -> denoised %.2f dB\n", sigma,
                  static_cast<long long>(count), res.psnr_noisy, res.psnr_denoised);
      std::fflush(stdout);
    }
  }
  return 0;
}

inline const std::vector<Command>& commands() {
  static const std::vector<Command> list{{"train", cmd_train},           {"sample", cmd_sample},
                                         {"denoise", cmd_denoise},       {"inpaint", cmd_inpaint},
                                         {"trajectory", cmd_trajectory}, {"classifier", cmd_classifier},
                                         {"evaluate", cmd_evaluate}};
  return list;
}

}  // namespace mnist
