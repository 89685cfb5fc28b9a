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
#include "../common/subcommands.hpp"
#include "../common/train_options.hpp"
#include "anomaly.hpp"
#include "generate.hpp"
#include "quality.hpp"
#include "classifier.hpp"
#include "superres.hpp"
#include "tasks.hpp"
#include "train_curve.hpp"
#include "train.hpp"

#ifndef DDPM_EXAMPLES_DIR
#define DDPM_EXAMPLES_DIR "examples"
#endif

namespace mnist {

using examples::Command;

using examples::Ends;
using examples::option_in;

// Bounds of the options (the help texts quote them). Every value is checked
// right after parsing, before any model, data or output is touched.
inline constexpr ddpm::index_t kMaxSamplingSteps = 1000;  // the schedule's training timesteps
inline constexpr double kMaxGuidance = 100;
inline constexpr double kMaxSigma = 100;               // the schedule reaches sigma ~157 at t = 999
inline constexpr ddpm::index_t kMaxFirst = 10'000'000;  // --first: the data's size is checked once loaded
inline constexpr ddpm::index_t kMaxRowDigits = 1000;    // --count of denoise/inpaint: PNG columns
inline constexpr std::int64_t kMaxEvery = 1'000'000'000;

// The shipped model `name` (in examples/models) unless --model is given.
inline fs::path default_model_dir(const std::string& name = "mnist_cond") {
  const fs::path built_in = fs::path(DDPM_EXAMPLES_DIR) / "models" / name;
  if (fs::exists(built_in / "config.json")) return built_in;
  return fs::path("examples") / "models" / name;
}

inline UNet load_model(const std::string& dir, const std::string& shipped = "mnist_cond") {
  const fs::path d = dir.empty() ? default_model_dir(shipped) : fs::path(dir);
  auto unet = ddpm::io::load_unet2d<float, ddpm::backend::Cpu>(d);
  unet.set_mode(ddpm::nn::Mode::Inference);
  return unet;
}

// Options every generating command shares.
inline void add_common(cxxopts::Options& opts) {
  opts.add_options("common")
      ("model", "diffusers model folder (default: the shipped examples/models/mnist_cond)",
       cxxopts::value<std::string>()->default_value(""));
  examples::add_threads_help(opts, "common");
}

// --out: a .png (grid) or .idx/.idx3 (IDX3 unsigned bytes) file name.
inline fs::path out_option(const cxxopts::ParseResult& r) {
  const fs::path out = r["out"].as<std::string>();
  const auto ext = out.extension().string();
  ddpm::require(ext == ".png" || ext == ".idx" || ext == ".idx3", "--out: expected a .png or .idx file name, got '",
                out.string(), "'");
  return out;
}

inline int cmd_train(int argc, char** argv) {
  cxxopts::Options opts(argv[0], "Train the class-conditional U-Net on MNIST-style IDX data.");
  const TrainOptions d;
  examples::add_recipe_options(
      opts, d,
      {.data = "folder with train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]",
       .out = "output folder: checkpoint.safetensors, model/ (EMA weights), samples_*.png",
       .width = "channels of the first U-Net level (then 2x, 4x): a multiple of 8 in [8, 256]"});
  opts.add_options()
      ("label-dropout", "probability in [0, 1] of training with the null label (for guidance)", examples::number("0.1"))
      ("checkpoint-every", "steps between checkpoints (>= 1)", examples::number("200"))
      ("sample-every", "steps between sample grids (0: never)", examples::number("500"))
      ("resume", "continue from <out>/checkpoint.safetensors")
      ("time-limit", "train for this many seconds of wall time, in [1, 604800] (a week): the step count is fitted to it after "
                     "timing the first steps (--steps is then only an upper bound); 0: no limit", examples::number("0"))
      ("superres-scales", "train the super-resolution model instead (see `superres`), each sample at one of these "
                          "scales, comma-separated, each 2 or 4 (e.g. 2,4)", cxxopts::value<std::string>()->default_value(""))
      ("condition-dropout", "probability in [0, 1] of training the super-resolution model without its condition "
                            "image (for guidance)", examples::number("0"));
  examples::add_threads_help(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  TrainOptions o;
  examples::read_recipe_options(*r, o);
  o.label_dropout = option_in<double>(*r, "label-dropout", 0, 1);
  o.checkpoint_every = option_in<std::int64_t>(*r, "checkpoint-every", 1, kMaxEvery);
  o.sample_every = option_in<std::int64_t>(*r, "sample-every", 0, kMaxEvery);
  o.resume = r->count("resume") > 0;
  o.time_limit = option_in<double>(*r, "time-limit", 0, 604800);
  ddpm::require(o.time_limit == 0 || o.time_limit >= 1, "--time-limit: expected 0 (no limit) or seconds in [1, 604800], got ",
                o.time_limit);
  if (o.time_limit > 0 && r->count("steps") == 0) o.steps = examples::kMaxTrainingSteps;
  if (const auto scales = (*r)["superres-scales"].as<std::string>(); !scales.empty())
    o.superres_scales = examples::parse_list_in<int>("--superres-scales", scales, 2, 4);
  for (int k : o.superres_scales) check_superres_scale(k, "--superres-scales");
  o.condition_dropout = option_in<double>(*r, "condition-dropout", 0, 1);
  ddpm::require(o.condition_dropout == 0 || !o.superres_scales.empty(),
                "--condition-dropout: only with --superres-scales (the class-conditional model has --label-dropout)");
  return train(o);
}

// The samplers generate() takes: the registry's and sde-ve (the score SDE
// predictor-corrector loop), "ddpm, ddim, ..., kdpm2 or sde-ve".
inline std::string generate_sampler_help() {
  return ddpm::sampler_names_text(", ", ddpm::SamplerDirection::to_data) + " or " + kSdeVe;
}

// --sampler for generate(), checked now.
inline std::string generate_sampler_option(const cxxopts::ParseResult& r) {
  const auto name = r["sampler"].as<std::string>();
  if (name == kSdeVe) return name;
  try {
    return examples::sampler_option(r);
  } catch (const ddpm::Error& e) {
    if (std::string_view(e.what()).find("unknown sampler") == std::string_view::npos) throw;
    ddpm::fail("--sampler: unknown sampler '", name, "'; expected ", generate_sampler_help());
  }
}

// --sigmas for generate(): sde-ve has its own geometric sigmas.
inline std::string generate_sigmas_option(const cxxopts::ParseResult& r, const std::string& sampler) {
  if (sampler != kSdeVe) return examples::sigmas_option(r, sampler);
  const auto sigmas = r["sigmas"].as<std::string>();
  ddpm::require(sigmas == "default", "--sigmas: sde-ve uses its own geometric sigmas, got '", sigmas, "'");
  return sigmas;
}

inline constexpr ddpm::index_t kMaxCorrectSteps = 100;

inline void add_corrector(cxxopts::Options& opts, const std::string& group) {
  opts.add_options(group)
      ("corrector", "Langevin corrector after each predictor step: none or langevin (default: none; langevin for "
                    "sde-ve, whose loop has it built in)", cxxopts::value<std::string>()->default_value(""))
      ("snr", "Langevin step signal-to-noise ratio in (0, 1] (with the corrector)", examples::number("0.15"))
      ("correct-steps", "Langevin steps per noise level, 1 to 100 (with the corrector)", examples::number("1"));
}

// --corrector, --snr, --correct-steps into g (g.sampler already set).
inline void corrector_options(const cxxopts::ParseResult& r, GenerateOptions& g) {
  const auto c = r["corrector"].as<std::string>();
  ddpm::require(c.empty() || c == "none" || c == "langevin", "--corrector: expected none or langevin, got '", c, "'");
  g.langevin = c.empty() ? g.sampler == kSdeVe : c == "langevin";
  g.corrector.snr = option_in<double>(r, "snr", 0, 1, Ends::open_low);
  g.corrector.correct_steps = option_in<ddpm::index_t>(r, "correct-steps", 1, kMaxCorrectSteps);
  ddpm::require(g.langevin || (r.count("snr") == 0 && r.count("correct-steps") == 0),
                "--snr/--correct-steps: only with the Langevin corrector (--corrector langevin, or sde-ve)");
  ddpm::require(g.sampler != kSdeVe || g.steps >= 2, "--steps: sde-ve needs 2 to 1000 steps, got ", g.steps);
}

// "ddim", "ddim + Langevin (snr 0.15, 1 step a level)", "sde-ve (snr 0.15, 1 corrector step a level)".
inline std::string describe_sampling(const GenerateOptions& o) {
  char buf[160];
  if (o.sampler == kSdeVe)
    std::snprintf(buf, sizeof buf, "%s (snr %g, %lld corrector steps a level)", o.sampler.c_str(), o.corrector.snr,
                  static_cast<long long>(o.langevin ? o.corrector.correct_steps : 0));
  else if (o.langevin)
    std::snprintf(buf, sizeof buf, "%s + Langevin (snr %g, %lld steps a level)", o.sampler.c_str(), o.corrector.snr,
                  static_cast<long long>(o.corrector.correct_steps));
  else
    return o.sampler;
  return buf;
}

// Defaults: what the shipped model was measured with (README): ancestral
// DDPM sampling, 30 steps, guidance scale 6.
inline void add_sampling(cxxopts::Options& opts, const char* steps = "30") {
  opts.add_options("sampling")
      ("sampler", generate_sampler_help(), cxxopts::value<std::string>()->default_value("ddpm"))
      ("sigmas", examples::sigmas_help(), cxxopts::value<std::string>()->default_value("default"))
      ("steps", "sampling steps, 1 to 1000", examples::number(steps))
      ("guidance", "classifier-free guidance scale in [0, 100] (1: none)", examples::number("6"))
      ("seed", "random seed", examples::number("0"));
  add_corrector(opts, "sampling");
}

inline GenerateOptions generate_options(const cxxopts::ParseResult& r) {
  GenerateOptions g;
  g.sampler = generate_sampler_option(r);
  g.sigmas = generate_sigmas_option(r, g.sampler);
  g.steps = option_in<ddpm::index_t>(r, "steps", 1, kMaxSamplingSteps);
  g.guidance = option_in<double>(r, "guidance", 0, kMaxGuidance);
  g.seed = examples::seed_option(r);
  corrector_options(r, g);
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
    ddpm::fail("--out: expected a .png or .idx file name, got '", out.string(), "'");
}

inline int cmd_sample(int argc, char** argv) {
  cxxopts::Options opts(argv[0], "Generate digits with the class-conditional model.");
  opts.add_options()
      ("label", "digit 0-9 to generate (default: mixed labels, row r of the grid is digit r mod 10)", examples::number())
      ("count", "number of digits, 1 to 100000", examples::number("100"))
      ("columns", "PNG grid columns, 1 to 1000", examples::number("10"))
      ("out", "output .png (grid) or .idx (IDX3 unsigned bytes, N x 28 x 28)",
       cxxopts::value<std::string>()->default_value("samples.png"));
  add_sampling(opts);
  add_common(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  const auto count = option_in<ddpm::index_t>(*r, "count", 1, 100'000);
  const int columns = option_in<int>(*r, "columns", 1, 1000);
  const int label = r->count("label") ? option_in<int>(*r, "label", 0, kNumClasses - 1) : -1;
  const auto o = generate_options(*r);
  const fs::path out = out_option(*r);
  std::vector<std::int64_t> labels(static_cast<std::size_t>(count));
  for (ddpm::index_t i = 0; i < count; ++i)  // without --label, row r of the grid is digit r mod 10
    labels[static_cast<std::size_t>(i)] = label >= 0 ? label : (i / columns) % kNumClasses;
  auto unet = load_model((*r)["model"].as<std::string>());
  const auto images = generate(unet, labels, o);
  write_images(out, images.cview(), columns);
  std::printf("wrote %lld digits (%s, %lld steps, guidance %g) to %s\n", static_cast<long long>(count),
              describe_sampling(o).c_str(), static_cast<long long>(o.steps), o.guidance, out.string().c_str());
  return 0;
}

// Test digits [first, first + count) of the held-out split.
inline Dataset test_digits(const std::string& data, ddpm::index_t first, ddpm::index_t count) {
  Dataset all = load_split(data, "t10k");
  ddpm::require(first >= 0 && count > 0 && first + count <= all.size(), "--first/--count: expected first + count <= ",
                all.size(), " (the digits of the test split), got ", first, " + ", count);
  Dataset d;
  d.images = ddpm::Tensor<float>::copy_of(all.images.cview().slice(first, count));
  d.labels.assign(all.labels.begin() + first, all.labels.begin() + first + count);
  return d;
}

inline void add_test_data(cxxopts::Options& opts, const char* count) {
  opts.add_options("data")
      ("data", "folder with t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]",
       cxxopts::value<std::string>()->default_value("data/mnist"))
      ("first", "index of the first test digit (>= 0)", examples::number("0"))
      ("count", "number of test digits, 1 to 1000", examples::number(count));
}

// --first and --count of add_test_data, checked; the data is loaded later.
struct TestRange {
  ddpm::index_t first, count;
};
inline TestRange test_range(const cxxopts::ParseResult& r) {
  return {option_in<ddpm::index_t>(r, "first", 0, kMaxFirst), option_in<ddpm::index_t>(r, "count", 1, kMaxRowDigits)};
}

inline int cmd_denoise(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "Add Gaussian noise to test digits and denoise them by entering the reverse process at the\n"
                        "timestep whose noise level matches sigma (SDEdit). Prints PSNR before and after; writes a\n"
                        "PNG with rows clean / noisy / denoised.");
  opts.add_options()
      ("sigma", "noise standard deviation in (0, 100], in the [-1, 1] units of the data", examples::number("0.5"))
      ("sampler", examples::sampler_help(), cxxopts::value<std::string>()->default_value("ddim"))
      ("steps", "sampler steps over the whole schedule, 1 to 1000 (fewer are run: those below sigma)",
       examples::number("50"))
      ("seed", "random seed", examples::number("0"))
      ("out", "output PNG", cxxopts::value<std::string>()->default_value("denoise.png"));
  add_test_data(opts, "10");
  add_common(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  const double sigma = option_in<double>(*r, "sigma", 0, kMaxSigma, Ends::open_low);
  const auto sampler = examples::sampler_option(*r);
  const auto steps = option_in<ddpm::index_t>(*r, "steps", 1, kMaxSamplingSteps);
  const auto seed = examples::seed_option(*r);
  const auto range = test_range(*r);
  const fs::path out = out_option(*r);
  auto unet = load_model((*r)["model"].as<std::string>());
  const Dataset d = test_digits((*r)["data"].as<std::string>(), range.first, range.count);
  const auto res = denoise(unet, d.images.cview(), sigma, sampler, steps, seed);
  const auto grid = stack_rows({d.images.cview(), res.noisy.cview(), res.denoised.cview()});
  write_images(out, grid.cview(), static_cast<int>(d.size()));
  std::printf("sigma %.2f: PSNR noisy %.2f dB -> denoised %.2f dB (%lld test digits); wrote %s\n", sigma,
              res.psnr_noisy, res.psnr_denoised, static_cast<long long>(d.size()), out.string().c_str());
  return 0;
}

// The mask of inpaint: --mask (a 28x28 image) or --region x,y,w,h.
inline ddpm::Tensor<float> inpaint_mask(const cxxopts::ParseResult& r) {
  if (const auto file = r["mask"].as<std::string>(); !file.empty()) {
    const auto img = ddpm::io::load_image(file, 1);
    ddpm::require(img.width == 28 && img.height == 28, "--mask: expected a 28x28 image, got ", img.width, "x",
                  img.height, " (", file, ")");
    ddpm::Tensor<float> mask({1, 1, 28, 28});
    for (ddpm::index_t i = 0; i < kPixels; ++i) mask[i] = img.pixels[static_cast<std::size_t>(i)] >= 128 ? 0.f : 1.f;
    return mask;
  }
  const auto reg = r["region"].as<std::string>();
  const auto v = examples::parse_list_in<int>("--region", reg, 0, 28);
  ddpm::require(v.size() == 4, "--region: expected x,y,w,h, got '", reg, "'");
  return rectangle_mask(v[0], v[1], v[2], v[3]);
}

inline int cmd_inpaint(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "Hide a region of test digits and fill it with the model (RePaint). Writes a PNG with rows\n"
                        "original / masked / inpainted.");
  opts.add_options()
      ("region", "x,y,w,h of the rectangle to fill, inside the 28x28 image",
       cxxopts::value<std::string>()->default_value("0,14,28,14"))
      ("mask", "28x28 mask image instead of --region: white (>= 128) = fill, black = keep",
       cxxopts::value<std::string>()->default_value(""))
      ("label", "condition on this digit, 0-9 (default -1: unconditional, the model infers it)", examples::number("-1"))
      ("sampler", examples::repaint_sampler_help(), cxxopts::value<std::string>()->default_value("ddpm"))
      ("steps", "sampler steps, 1 to 1000", examples::number("30"))
      ("resample", "RePaint resampling: model evaluations per step, 1 to 100", examples::number("3"))
      ("seed", "random seed", examples::number("0"))
      ("out", "output PNG", cxxopts::value<std::string>()->default_value("inpaint.png"));
  add_test_data(opts, "10");
  add_common(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  const int label = option_in<int>(*r, "label", -1, kNumClasses - 1);
  const auto sampler = examples::repaint_sampler_option(*r);
  const auto steps = option_in<ddpm::index_t>(*r, "steps", 1, kMaxSamplingSteps);
  const auto resample = option_in<ddpm::index_t>(*r, "resample", 1, 100);
  const auto seed = examples::seed_option(*r);
  const auto range = test_range(*r);
  const fs::path out = out_option(*r);
  const auto mask = inpaint_mask(*r);
  auto unet = load_model((*r)["model"].as<std::string>());
  const Dataset d = test_digits((*r)["data"].as<std::string>(), range.first, range.count);
  const auto filled = inpaint(unet, d.images.cview(), mask.cview(), sampler, steps, resample, label, seed);
  ddpm::Tensor<float> masked = d.images;  // the hidden part shown mid-grey
  for (ddpm::index_t i = 0; i < masked.numel(); ++i)
    if (mask[i % kPixels] < 0.5f) masked[i] = 0.f;
  const auto grid = stack_rows({d.images.cview(), masked.cview(), filled.cview()});
  write_images(out, grid.cview(), static_cast<int>(d.size()));
  std::printf("inpainted %lld test digits; PSNR of the filled image vs the original %.2f dB; wrote %s\n",
              static_cast<long long>(d.size()), psnr(filled.cview(), d.images.cview()), out.string().c_str());
  return 0;
}

inline int cmd_trajectory(int argc, char** argv) {
  cxxopts::Options opts(argv[0], "Write x_t along the reverse process, from noise to digit, as a PNG (one row per digit).");
  opts.add_options()
      ("label", "digit 0-9 to generate (default: one row per digit 0-9)", examples::number())
      ("snapshots", "columns: x_T, ..., x_0; 2 to steps + 1", examples::number("11"))
      ("out", "output PNG", cxxopts::value<std::string>()->default_value("trajectory.png"));
  add_sampling(opts);
  add_common(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  const auto o = generate_options(*r);
  ddpm::require(o.sampler != kSdeVe && !o.langevin,
                "trajectory: --sampler sde-ve and --corrector langevin are not supported here; use sample");
  const int snaps = option_in<int>(*r, "snapshots", 2, static_cast<int>(o.steps) + 1);
  std::vector<std::int64_t> labels;
  if (r->count("label")) labels.push_back(option_in<int>(*r, "label", 0, kNumClasses - 1));
  else for (int k = 0; k < kNumClasses; ++k) labels.push_back(k);
  const fs::path out = out_option(*r);
  auto unet = load_model((*r)["model"].as<std::string>());
  const auto strip = trajectory(unet, labels, snaps, o);
  write_images(out, strip.cview(), snaps);
  std::printf("wrote %zu trajectories of %d snapshots (%s, %lld steps) to %s\n", labels.size(), snaps, o.sampler.c_str(),
              static_cast<long long>(o.steps), out.string().c_str());
  return 0;
}

inline int cmd_classifier(int argc, char** argv) {
  cxxopts::Options opts(argv[0], "Train the small CNN digit classifier that evaluate uses; prints its held-out accuracy.");
  opts.add_options()
      ("data", "folder with the train and t10k IDX files", cxxopts::value<std::string>()->default_value("data/mnist"))
      ("epochs", "training epochs, 1 to 1000", examples::number("4"))
      ("seed", "random seed", examples::number("0"))
      ("out", "where to save the weights", cxxopts::value<std::string>()->default_value("out/mnist_classifier.safetensors"));
  examples::add_threads_help(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  const int epochs = option_in<int>(*r, "epochs", 1, 1000);
  const auto seed = examples::seed_option(*r);
  const Dataset train = load_split((*r)["data"].as<std::string>(), "train");
  const Dataset test = load_split((*r)["data"].as<std::string>(), "t10k");
  Classifier net;
  train_classifier(net, train, {.epochs = epochs, .seed = seed});
  const auto pred = classify(net, test.images.cview());
  const fs::path out = (*r)["out"].as<std::string>();
  if (!out.parent_path().empty()) fs::create_directories(out.parent_path());
  net.save(out);
  std::printf("classifier: held-out accuracy %.2f%% on %lld test digits; saved %s\n", 100.0 * accuracy(pred, test.labels),
              static_cast<long long>(test.size()), out.string().c_str());
  return 0;
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
      ("per-class", "samples per digit, 1 to 10000", examples::number("50"))
      ("guidance", "guidance scales to measure, comma-separated, each in [0, 100]",
       cxxopts::value<std::string>()->default_value("6"))
      ("sampler", generate_sampler_help(), cxxopts::value<std::string>()->default_value("ddpm"))
      ("steps", "sampling steps, 1 to 1000", examples::number("30"))
      ("sigmas", examples::sigmas_help(), cxxopts::value<std::string>()->default_value("default"))
      ("denoise-sigmas", "denoising noise levels, comma-separated, each in (0, 100] (empty: skip)",
       cxxopts::value<std::string>()->default_value("0.2,0.5,1.0"))
      ("denoise-count", "test digits to denoise, 1 to 10000", examples::number("200"))
      ("seed", "random seed", examples::number("0"));
  add_corrector(opts, "");
  add_common(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  const ddpm::index_t per_class = option_in<ddpm::index_t>(*r, "per-class", 1, 10'000), n = per_class * kNumClasses;
  const auto scales =
      examples::parse_list_in<double>("--guidance", (*r)["guidance"].as<std::string>(), 0, kMaxGuidance);
  GenerateOptions o;
  o.sampler = generate_sampler_option(*r);
  o.sigmas = generate_sigmas_option(*r, o.sampler);
  o.steps = option_in<ddpm::index_t>(*r, "steps", 1, kMaxSamplingSteps);
  o.seed = examples::seed_option(*r);
  corrector_options(*r, o);
  const auto sig = (*r)["denoise-sigmas"].as<std::string>();
  const auto sigmas = sig.empty() ? std::vector<double>{}
                                  : examples::parse_list_in<double>("--denoise-sigmas", sig, 0, kMaxSigma, Ends::open_low);
  const auto denoise_count = option_in<ddpm::index_t>(*r, "denoise-count", 1, 10'000);

  auto unet = load_model((*r)["model"].as<std::string>());
  const Dataset train = load_split((*r)["data"].as<std::string>(), "train");
  const Dataset test = load_split((*r)["data"].as<std::string>(), "t10k");
  Classifier net;
  net.load((*r)["classifier"].as<std::string>());
  ddpm::Tensor<float> test_features, train_features;
  const auto test_pred = classify(net, test.images.cview(), &test_features);
  std::printf("classifier held-out accuracy: %.2f%% (%lld test digits)\n", 100.0 * accuracy(test_pred, test.labels),
              static_cast<long long>(test.size()));
  // The floor of the distance: real training digits against real test digits.
  const ddpm::index_t ref_n = std::min(n, train.size());
  classify(net, train.images.cview().slice(0, ref_n), &train_features);
  std::printf("Frechet distance, %lld real training digits vs held-out digits: %.3f (the floor)\n",
              static_cast<long long>(ref_n), frechet_distance(train_features.cview(), test_features.cview()));

  std::vector<std::int64_t> labels(static_cast<std::size_t>(n));
  for (ddpm::index_t i = 0; i < n; ++i) labels[static_cast<std::size_t>(i)] = i % kNumClasses;
  for (double w : scales) {
    o.guidance = w;
    const auto t0 = std::chrono::steady_clock::now();
    const auto samples = generate(unet, labels, o);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ddpm::Tensor<float> f;
    const auto pred = classify(net, samples.cview(), &f);
    std::printf("guidance %.1f (%s, %lld steps, %lld samples in %.0fs): classified as the requested digit %.1f%%, "
                "Frechet distance %.3f\n  per digit:",
                w, describe_sampling(o).c_str(), static_cast<long long>(o.steps), static_cast<long long>(n), secs,
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
  if (!sigmas.empty()) {
    const ddpm::index_t count = std::min(denoise_count, test.size());
    const auto clean = test.images.cview().slice(0, count);
    for (double sigma : sigmas) {
      const auto res = denoise(unet, clean, sigma, "ddim", 50, o.seed);
      std::printf("denoising sigma %.1f (%lld test digits, DDIM): PSNR noisy %.2f dB -> denoised %.2f dB\n", sigma,
                  static_cast<long long>(count), res.psnr_noisy, res.psnr_denoised);
      std::fflush(stdout);
    }
  }
  return 0;
}

inline int cmd_quality(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "The sampler quality table: for each sampler and budget of model evaluations, the fraction of\n"
                        "class-conditional samples classified as the requested digit, the Frechet distance of classifier\n"
                        "features to held-out digits, and the time per image. Writes a Markdown table and a plot\n"
                        "(left: Frechet distance, right: accuracy, against log evaluations; one colour per sampler).");
  opts.add_options()
      ("data", "folder with the train and t10k IDX files", cxxopts::value<std::string>()->default_value("data/mnist"))
      ("classifier", "classifier weights (from `classifier`)",
       cxxopts::value<std::string>()->default_value("out/mnist_classifier.safetensors"))
      ("samplers", "comma-separated name[:karras|exponential][+langevin] or sde-ve (default: every generating "
                   "sampler, the Karras variants, ddim+langevin and sde-ve)", cxxopts::value<std::string>()->default_value(""))
      ("evals", "budgets of model evaluations, comma-separated, each in [1, 1000]",
       cxxopts::value<std::string>()->default_value("5,10,20,50"))
      ("per-class", "samples per digit and cell, 2 to 10000", examples::number("20"))
      ("guidance", "classifier-free guidance scale in [0, 100]", examples::number("3"))
      ("seed", "random seed", examples::number("0"))
      ("table", "where to write the Markdown table", cxxopts::value<std::string>()->default_value("out/sampler_quality.md"))
      ("plot", "where to write the plot (.png)", cxxopts::value<std::string>()->default_value("out/sampler_quality.png"));
  add_common(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  QualityOptions o;
  const auto list = (*r)["samplers"].as<std::string>();
  if (list.empty()) o.samplers = default_variants();
  else
    for (std::size_t pos = 0; pos <= list.size();) {
      const auto comma = std::min(list.find(',', pos), list.size());
      o.samplers.push_back(parse_variant(list.substr(pos, comma - pos)));
      pos = comma + 1;
    }
  o.budgets = examples::parse_list_in<ddpm::index_t>("--evals", (*r)["evals"].as<std::string>(), 1, kMaxSamplingSteps);
  o.per_class = option_in<ddpm::index_t>(*r, "per-class", 2, 10'000);
  o.guidance = option_in<double>(*r, "guidance", 0, kMaxGuidance);
  o.seed = examples::seed_option(*r);
  const fs::path table = (*r)["table"].as<std::string>(), plot = (*r)["plot"].as<std::string>();
  ddpm::require(plot.extension() == ".png", "--plot: expected a .png file name, got '", plot.string(), "'");

  auto unet = load_model((*r)["model"].as<std::string>());
  const Dataset test = load_split((*r)["data"].as<std::string>(), "t10k");
  Classifier net;
  net.load((*r)["classifier"].as<std::string>());
  ddpm::Tensor<float> test_features;
  classify(net, test.images.cview(), &test_features);
  std::printf("%lld samples per cell (guidance %.1f) against %lld held-out digits; %d threads\n",
              static_cast<long long>(o.per_class * kNumClasses), o.guidance, static_cast<long long>(test.size()),
              ddpm::backend::Cpu::num_threads());
  const auto cells = measure_quality(unet, net, test_features.cview(), o);
  const auto md = quality_table(cells, o);
  std::printf("\n%s", md.c_str());
  for (const auto& p : {table, plot})
    if (!p.parent_path().empty()) fs::create_directories(p.parent_path());
  ddpm::io::write_text_file(table, md);
  ddpm::io::write_png(plot, quality_plot(cells, o, palette()));
  std::printf("wrote %s and %s\n", table.string().c_str(), plot.string().c_str());
  return 0;
}

inline int cmd_train_curve(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "Time to quality: trains the class-conditional model from scratch once per time budget (train\n"
                        "--time-limit, the default recipe) and measures each as evaluate does: the fraction of\n"
                        "class-conditional samples classified as the requested digit and the Frechet distance of\n"
                        "classifier features to held-out digits. Writes <out>/curve.md and <out>/curve.png (left:\n"
                        "Frechet distance, right: accuracy with a dashed line at 97%, against minutes).");
  opts.add_options()
      ("data", "folder with the train and t10k IDX files", cxxopts::value<std::string>()->default_value("data/mnist"))
      ("out", "output folder: one run per budget (<minutes>min/), curve.md, curve.png",
       cxxopts::value<std::string>()->default_value("out/train_curve"))
      ("minutes", "time budgets in minutes, comma-separated, each in [0.05, 10080]",
       cxxopts::value<std::string>()->default_value("1,2,3,5,10"))
      ("classifier", "classifier weights (from `classifier`)",
       cxxopts::value<std::string>()->default_value("out/mnist_classifier.safetensors"))
      ("per-class", "samples per digit and budget, 1 to 10000", examples::number("20"));
  add_sampling(opts);
  examples::add_threads_help(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  CurveOptions o;
  o.recipe.data = (*r)["data"].as<std::string>();
  o.recipe.out = (*r)["out"].as<std::string>();
  o.minutes = examples::parse_list_in<double>("--minutes", (*r)["minutes"].as<std::string>(), 0.05, 10080);
  o.per_class = option_in<ddpm::index_t>(*r, "per-class", 1, 10'000);
  o.sampling = generate_options(*r);
  o.recipe.seed = o.sampling.seed;
  o.sampling.progress = false;
  Classifier net;
  net.load((*r)["classifier"].as<std::string>());  // before hours of training: a missing file fails now
  const Dataset test = load_split(o.recipe.data, "t10k");
  ddpm::Tensor<float> test_features;
  classify(net, test.images.cview(), &test_features);
  const auto points = train_curve(o, net, test_features.cview());
  const auto md = curve_table(points);
  std::printf("\n%s", md.c_str());
  ddpm::io::write_text_file(o.recipe.out / "curve.md", md);
  ddpm::io::write_png(o.recipe.out / "curve.png", curve_plot(points));
  std::printf("wrote %s and %s\n", (o.recipe.out / "curve.md").string().c_str(), (o.recipe.out / "curve.png").string().c_str());
  return 0;
}

// --input and --labels of invert / translate: the first `count` digits (all
// when the file holds fewer), checked (28x28, one label in [0, 9] each).
// A name without ".gz" that does not exist is also looked for with it.
inline Dataset load_digits(const cxxopts::ParseResult& r, ddpm::index_t count) {
  const auto existing = [](fs::path p) {
    if (!fs::exists(p) && fs::exists(p.string() + ".gz")) p += ".gz";
    return p;
  };
  const fs::path images = existing(r["input"].as<std::string>()), labels = existing(r["labels"].as<std::string>());
  Dataset d;
  d.images = load_images_28(images, "--input");
  d.labels = ddpm::io::load_idx_labels(labels, kNumClasses);
  ddpm::require(static_cast<ddpm::index_t>(d.labels.size()) == d.images.dim(0), "--labels: ", d.labels.size(),
                " labels in ", labels.string(), " for ", d.images.dim(0), " images in ", images.string());
  if (count < d.size()) {
    d.images = ddpm::Tensor<float>::copy_of(d.images.cview().slice(0, count));
    d.labels.resize(static_cast<std::size_t>(count));
  }
  return d;
}

// Options invert, translate and evaluate-edit share: 50 DDIM steps (eta 0)
// each way, the conditional model (guidance 1) while inverting.
inline void add_edit(cxxopts::Options& opts, const char* generation_guidance, const char* fixed_point,
                     const char* strength = "1") {
  opts.add_options("DDIM inversion")
      ("steps", "DDIM steps each way, 1 to 1000", examples::number("50"))
      ("inversion-guidance", "classifier-free guidance scale while inverting under the digit's label, in [0, 100]"
       " (1: the conditional model, 0: the unconditional one)", examples::number("1"))
      ("guidance", "guidance scale while regenerating, in [0, 100]", examples::number(generation_guidance))
      ("guidance-rescale", "rescale of the guided prediction toward the conditional one's spread, in [0, 1]"
       " (0: off)", examples::number("0"))
      ("fixed-point", "fixed-point refinements per inverse step, 0 to 20 (each one more model call; 0: plain DDIM"
       " inversion)", examples::number(fixed_point))
      ("strength", "how far toward noise to invert, in (0, 1]: the fraction of the steps run each way (1: to pure"
       " noise; less keeps more of the input)", examples::number(strength));
}

inline EditOptions edit_options(const cxxopts::ParseResult& r) {
  EditOptions o;
  o.steps = option_in<ddpm::index_t>(r, "steps", 1, kMaxSamplingSteps);
  o.inversion_guidance = option_in<double>(r, "inversion-guidance", 0, kMaxGuidance);
  o.generation_guidance = option_in<double>(r, "guidance", 0, kMaxGuidance);
  o.guidance_rescale = option_in<double>(r, "guidance-rescale", 0, 1);
  o.fixed_point = option_in<ddpm::index_t>(r, "fixed-point", 0, 20);
  o.strength = option_in<double>(r, "strength", 0, 1, Ends::open_low);
  ddpm::require(o.strength * static_cast<double>(o.steps) >= 1, "--strength: ", o.strength, " of ", o.steps,
                " steps runs no step; expected strength * steps >= 1");
  return o;
}

inline void add_digit_files(cxxopts::Options& opts, const char* out) {
  opts.add_options()
      ("input", "digits: IDX3 unsigned bytes, N x 28 x 28 (as `sample --out x.idx` writes)",
       cxxopts::value<std::string>()->default_value("data/mnist/t10k-images-idx3-ubyte"))
      ("labels", "their labels: IDX1 unsigned bytes, N values in 0-9",
       cxxopts::value<std::string>()->default_value("data/mnist/t10k-labels-idx1-ubyte"))
      ("count", "use the first N digits of --input (all when it holds fewer), 1 to 100000", examples::number("16"))
      ("out", "output .idx (IDX3 unsigned bytes) or .png (grid)", cxxopts::value<std::string>()->default_value(out))
      ("png", "also write a PNG of input / output row pairs, 16 digits a row (empty: none)",
       cxxopts::value<std::string>()->default_value(""));
}

// --png: a .png file name or nothing.
inline fs::path png_option(const cxxopts::ParseResult& r) {
  const fs::path png = r["png"].as<std::string>();
  ddpm::require(png.empty() || png.extension() == ".png", "--png: expected a .png file name, got '", png.string(), "'");
  return png;
}

inline void write_pairs(const fs::path& png, ddpm::ConstTensorView<float> a, ddpm::ConstTensorView<float> b) {
  if (png.empty()) return;
  const ddpm::index_t columns = std::min<ddpm::index_t>(a.dim(0), 16);
  write_images(png, pair_rows(a, b, columns).cview(), static_cast<int>(columns));
}

// Defaults chosen with evaluate-edit (README, "Inversion and translation"):
// invert refines each inverse step once (fixed-point inversion); translate
// bridges through the level 60% of the way to noise and regenerates with
// guidance 2, the pair that keeps both the class (>= 90%) and the ink mass.
inline constexpr const char* kInvertFixedPoint = "1";
inline constexpr const char* kTranslateGuidance = "2";
inline constexpr const char* kTranslateStrength = "0.6";

inline int cmd_invert(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "Invert digits under their labels with DDIM (eta 0, the ODE run backwards) and regenerate them\n"
                        "from the noise found; prints the mean PSNR of the reconstructions. --out gets the\n"
                        "reconstructions, --png rows of originals over reconstructions.");
  add_digit_files(opts, "inverted.idx");
  add_edit(opts, "1", kInvertFixedPoint);
  add_common(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  const auto count = option_in<ddpm::index_t>(*r, "count", 1, 100'000);
  const auto o = edit_options(*r);
  const fs::path out = out_option(*r), png = png_option(*r);
  const Dataset d = load_digits(*r, count);
  auto unet = load_model((*r)["model"].as<std::string>());
  const auto res = invert_digits(unet, d.images.cview(), d.labels, o);
  write_images(out, res.reconstructed.cview(), 16);
  write_pairs(png, d.images.cview(), res.reconstructed.cview());
  std::printf("inverted and regenerated %lld digits (%lld DDIM steps each way, guidance %g / %g, fixed-point %lld):"
              " mean PSNR %.2f dB; wrote %s\n",
              static_cast<long long>(d.size()), static_cast<long long>(o.steps), o.inversion_guidance,
              o.generation_guidance, static_cast<long long>(o.fixed_point), res.mean_psnr, out.string().c_str());
  return 0;
}

inline int cmd_translate(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "Redraw digits as class K keeping their style (Dual Diffusion Implicit Bridges): invert each\n"
                        "under its own label with DDIM, regenerate under label K. Prints the mean relative change\n"
                        "of ink mass; --png writes rows of inputs over their translations.");
  opts.add_options()("to", "target digit, 0-9", examples::number("8"));
  add_digit_files(opts, "translated.idx");
  add_edit(opts, kTranslateGuidance, "0", kTranslateStrength);
  add_common(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  const int to = option_in<int>(*r, "to", 0, kNumClasses - 1);
  const auto count = option_in<ddpm::index_t>(*r, "count", 1, 100'000);
  const auto o = edit_options(*r);
  const fs::path out = out_option(*r), png = png_option(*r);
  const Dataset d = load_digits(*r, count);
  auto unet = load_model((*r)["model"].as<std::string>());
  const std::vector<std::int64_t> target(d.labels.size(), to);
  const auto y = translate_digits(unet, d.images.cview(), d.labels, target, o);
  write_images(out, y.cview(), 16);
  write_pairs(png, d.images.cview(), y.cview());
  std::printf("translated %lld digits to %d (%lld DDIM steps each way, guidance %g / %g): mean relative change of"
              " ink mass %.1f%%; wrote %s\n",
              static_cast<long long>(d.size()), to, static_cast<long long>(o.steps), o.inversion_guidance,
              o.generation_guidance, 100.0 * mean_relative_ink_change(d.images.cview(), y.cview()),
              out.string().c_str());
  return 0;
}

inline int cmd_evaluate_edit(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "Measure invert and translate on held-out digits: the mean PSNR of inversion + regeneration\n"
                        "under the own label, and for each target class the fraction of translated digits the\n"
                        "classifier (from `classifier`) assigns to it and the mean relative change of ink mass\n"
                        "(digits already of the target class are left out).");
  opts.add_options()
      ("data", "folder with the t10k IDX files", cxxopts::value<std::string>()->default_value("data/mnist"))
      ("classifier", "classifier weights (from `classifier`)",
       cxxopts::value<std::string>()->default_value("out/mnist_classifier.safetensors"))
      ("first", "index of the first test digit (>= 0)", examples::number("0"))
      ("count", "test digits, 1 to 10000", examples::number("200"))
      ("targets", "target classes of the translation, comma-separated, each 0-9",
       cxxopts::value<std::string>()->default_value("0,3,7"))
      ("inversion-guidance-own", "guidance while inverting for the PSNR part, in [0, 100]", examples::number("1"))
      ("guidance-own", "guidance while regenerating for the PSNR part, in [0, 100]", examples::number("1"));
  add_edit(opts, kTranslateGuidance, "0", kTranslateStrength);
  opts.add_options()("fixed-point-own", "fixed-point refinements for the PSNR part, 0 to 20",
                     examples::number(kInvertFixedPoint));
  add_common(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  const auto first = option_in<ddpm::index_t>(*r, "first", 0, kMaxFirst);
  const auto count = option_in<ddpm::index_t>(*r, "count", 1, 10'000);
  const auto targets = examples::parse_list_in<int>("--targets", (*r)["targets"].as<std::string>(), 0, kNumClasses - 1);
  EditOptions own = edit_options(*r), tr = own;
  own.inversion_guidance = option_in<double>(*r, "inversion-guidance-own", 0, kMaxGuidance);
  own.generation_guidance = option_in<double>(*r, "guidance-own", 0, kMaxGuidance);
  own.guidance_rescale = 0;
  own.fixed_point = option_in<ddpm::index_t>(*r, "fixed-point-own", 0, 20);
  own.strength = 1.0;  // the round trip through pure noise; --strength is the translation's
  auto unet = load_model((*r)["model"].as<std::string>());
  Classifier net;
  net.load((*r)["classifier"].as<std::string>());
  const Dataset d = test_digits((*r)["data"].as<std::string>(), first, count);
  const auto t0 = std::chrono::steady_clock::now();
  const auto inv = invert_digits(unet, d.images.cview(), d.labels, own);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("inversion: %lld held-out digits, %lld DDIM steps each way, guidance %g / %g, fixed-point %lld: mean PSNR"
              " %.2f dB (%.0fs)\n",
              static_cast<long long>(d.size()), static_cast<long long>(own.steps), own.inversion_guidance,
              own.generation_guidance, static_cast<long long>(own.fixed_point), inv.mean_psnr, secs);
  std::fflush(stdout);
  for (int k : targets) {
    Dataset src;  // the digits not already of class k
    std::vector<ddpm::index_t> idx;
    for (ddpm::index_t i = 0; i < d.size(); ++i)
      if (d.labels[static_cast<std::size_t>(i)] != k) idx.push_back(i);
    gather(d, idx, src.images, src.labels);
    const std::vector<std::int64_t> target(src.labels.size(), k);
    const auto y = translate_digits(unet, src.images.cview(), src.labels, target, tr);
    const auto pred = classify(net, y.cview());
    std::printf("translation to %d: %lld digits, guidance %g / %g, rescale %g, fixed-point %lld: classified as %d"
                " %.1f%%, mean relative change of ink mass %.1f%% (signed %+.1f%%)\n",
                k, static_cast<long long>(src.size()), tr.inversion_guidance, tr.generation_guidance,
                tr.guidance_rescale, static_cast<long long>(tr.fixed_point), k, 100.0 * accuracy(pred, target),
                100.0 * mean_relative_ink_change(src.images.cview(), y.cview()),
                100.0 * mean_relative_ink_change(src.images.cview(), y.cview(), true));
    std::fflush(stdout);
  }
  return 0;
}

inline constexpr ddpm::index_t kMaxMapColumns = 32;  // anomaly --maps: images drawn

inline int cmd_anomaly(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "Score images by how much the model changes them when it reconstructs them from noise at\n"
                        "timestep t (AnoDDPM): the score is the mean of the top-k pixels of the anomaly map, the\n"
                        "squared reconstruction error averaged over draws; higher is more anomalous. Writes one score\n"
                        "per image per line. --evaluate measures image-level AUROC of held-out digits against\n"
                        "synthetic defects and Fashion-MNIST, and pixel-level AUROC against the defect masks.");
  const AnomalyRun d;
  opts.add_options()
      ("input", "IDX3 file of 28x28 images", cxxopts::value<std::string>()->default_value(""))
      ("out", "output text file: one score per line", cxxopts::value<std::string>()->default_value("scores.txt"))
      ("maps", "PNG with rows input / reconstruction / anomaly map (the first 32 images; with --evaluate: 8 of each"
               " set)", cxxopts::value<std::string>()->default_value(""))
      ("t,timestep", "timestep to noise to, 1 to 999 (--t T is accepted too)",
       examples::number(std::to_string(d.t)))
      ("draws", "independent noise draws averaged, 1 to 1000", examples::number(std::to_string(d.draws)))
      ("steps", "sampler steps over the whole schedule, 1 to 1000 (those at or below t run)",
       examples::number(std::to_string(d.steps)))
      ("sampler", examples::sampler_help(), cxxopts::value<std::string>()->default_value(d.sampler))
      ("score", "statistic of the map: mean, max or top-k-mean",
       cxxopts::value<std::string>()->default_value(std::string(ddpm::to_string(d.score))))
      ("top-k", "pixels averaged by top-k-mean, 1 to 784", examples::number(std::to_string(d.top_k)))
      ("seed", "random seed (noise draws; defects with --evaluate)", examples::number("0"))
      ("evaluate", "measure AUROC instead of scoring --input")
      ("data", "with --evaluate: folder with the t10k MNIST IDX files",
       cxxopts::value<std::string>()->default_value("data/mnist"))
      ("fashion", "with --evaluate: folder with the t10k Fashion-MNIST IDX files",
       cxxopts::value<std::string>()->default_value("data/fashion-mnist"))
      ("count", "with --evaluate: images per set, 1 to 5000", examples::number("100"));
  add_common(opts);
  // cxxopts takes no one-letter long option: --t T is read as --timestep T.
  std::vector<std::string> args(argv, argv + argc);
  for (auto& a : args)
    if (a == "--t" || a.starts_with("--t=")) a.replace(0, 3, "--timestep");
  std::vector<char*> argp;
  for (auto& a : args) argp.push_back(a.data());
  const auto r = examples::parse_options(opts, argc, argp.data());
  if (!r) return 0;
  AnomalyRun o;
  o.t = option_in<ddpm::index_t>(*r, "t", 1, kMaxSamplingSteps - 1);
  o.draws = option_in<ddpm::index_t>(*r, "draws", 1, ddpm::kMaxAnomalyDraws);
  o.steps = option_in<ddpm::index_t>(*r, "steps", 1, kMaxSamplingSteps);
  o.sampler = examples::sampler_option(*r);
  const auto score = (*r)["score"].as<std::string>();
  ddpm::require(score == "mean" || score == "max" || score == "top-k-mean",
                "--score: expected mean, max or top-k-mean, got '", score, "'");
  o.score = ddpm::parse_anomaly_score(score);
  o.top_k = option_in<ddpm::index_t>(*r, "top-k", 1, kPixels);
  o.seed = examples::seed_option(*r);
  const fs::path maps = (*r)["maps"].as<std::string>();
  ddpm::require(maps.empty() || maps.extension() == ".png", "--maps: expected a .png file name, got '", maps.string(),
                "'");
  if (r->count("evaluate")) {
    const auto count = option_in<ddpm::index_t>(*r, "count", 1, 5000);
    auto unet = load_model((*r)["model"].as<std::string>());
    const auto digits = load_split((*r)["data"].as<std::string>(), "t10k");
    const auto fashion = load_images_28(find_idx((*r)["fashion"].as<std::string>(), "t10k", "images-idx3-ubyte"),
                                        "--fashion");
    const auto e = evaluate_anomaly(unet, digits.images.cview(), fashion.cview(), count, o, maps);
    std::printf("anomaly: t %lld, %lld of %lld %s steps, %lld draws, score %s (k %lld), %lld images per set, %.0fs\n",
                static_cast<long long>(e.t), static_cast<long long>(e.t * o.steps / kMaxSamplingSteps),
                static_cast<long long>(o.steps), o.sampler.c_str(), static_cast<long long>(o.draws),
                std::string(ddpm::to_string(o.score)).c_str(), static_cast<long long>(o.top_k),
                static_cast<long long>(count), e.seconds);
    std::printf("image AUROC, digits vs synthetic defects: %.4f (scratch %.4f, blob %.4f, missing stroke %.4f)\n",
                e.auroc_defects, e.auroc_kind[0], e.auroc_kind[1], e.auroc_kind[2]);
    std::printf("image AUROC, digits vs Fashion-MNIST:     %.4f\n", e.auroc_fashion);
    std::printf("pixel AUROC, maps vs defect masks:        %.4f\n", e.auroc_pixels);
    if (!maps.empty()) std::printf("wrote %s\n", maps.string().c_str());
    return 0;
  }
  const fs::path input = (*r)["input"].as<std::string>(), out = (*r)["out"].as<std::string>();
  ddpm::require(!input.empty(), "--input: expected an IDX3 file of 28x28 images (or --evaluate)");
  const auto images = load_images_28(input, "--input");
  auto unet = load_model((*r)["model"].as<std::string>());
  const auto res = score_images(unet, images.cview(), o);
  write_scores(out, res.scores);
  if (!maps.empty()) {
    const ddpm::index_t shown = std::min(images.dim(0), kMaxMapColumns);
    const auto grid = maps_grid({{images.cview(), &res}}, shown);
    ddpm::io::write_png(maps, ddpm::io::make_grid(grid.cview(), static_cast<int>(shown)));
  }
  std::printf("scored %lld images (t %lld, %lld draws): wrote %s%s%s\n", static_cast<long long>(images.dim(0)),
              static_cast<long long>(res.t), static_cast<long long>(o.draws), out.string().c_str(),
              maps.empty() ? "" : " and ", maps.string().c_str());
  return 0;
}

// --input of superres: IDX3 images, the first `count` (all when count is 0
// or the file holds fewer).
inline ddpm::Tensor<float> load_images(const fs::path& file, ddpm::index_t count) {
  auto x = ddpm::io::load_idx_images<float>(file);
  if (count > 0 && count < x.dim(0)) x = ddpm::Tensor<float>::copy_of(x.cview().slice(0, count));
  return x;
}

inline int cmd_superres(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "Super-resolve digits: 7x7 (--scale 4) or 14x14 (--scale 2) to 28x28 with the image-conditioned\n"
                        "model (SR3: the noisy digit concatenated with the bicubic upsampling of the low-resolution\n"
                        "one). The degradation the model knows: a k x k box average of the 28x28 digit, rounded to\n"
                        "8 bits (--degrade makes such images). --evaluate measures it against bicubic upsampling.");
  opts.add_options()
      ("scale", "upsampling factor: 2 (14x14 -> 28x28) or 4 (7x7 -> 28x28)", examples::number("4"))
      ("input", "low-resolution images, IDX3 unsigned bytes, N x 7 x 7 (--scale 4) or N x 14 x 14 (--scale 2); with"
                " --degrade 28x28 digits (default: the first --count held-out digits of --data, degraded)",
       cxxopts::value<std::string>()->default_value(""))
      ("out", "output IDX3 file: the 28x28 digits (with --degrade: the low-resolution images)",
       cxxopts::value<std::string>()->default_value("superres.idx"))
      ("count", "use the first N images (default: all of --input; 16 held-out digits without --input; 1000 with"
                " --evaluate), 1 to 100000", examples::number())
      ("png", "also write a PNG: rows low-res (nearest-upscaled) / bicubic / ours / original (with --reference or"
              " without --input), 16 digits a row", cxxopts::value<std::string>()->default_value(""))
      ("reference", "the original 28x28 digits of --input (IDX3): a PNG row, and PSNR/SSIM printed",
       cxxopts::value<std::string>()->default_value(""))
      ("degrade", "only degrade: the 28x28 digits of --input to --out at --scale (no model)")
      ("evaluate", "measure on held-out digits at 2x and 4x: PSNR and SSIM against the originals for bicubic"
                   " upsampling and ours, and the classifier's accuracy on the originals, bicubic and ours");
  opts.add_options("sampling")
      ("sampler", examples::sampler_help(), cxxopts::value<std::string>()->default_value("ddpm"))
      ("steps", "sampling steps, 1 to 1000", examples::number("20"))
      ("seed", "random seed", examples::number("0"));
  opts.add_options("held-out digits")
      ("data", "folder with t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]",
       cxxopts::value<std::string>()->default_value("data/mnist"))
      ("first", "index of the first test digit (>= 0)", examples::number("0"))
      ("classifier", "classifier weights for --evaluate (from `classifier`)",
       cxxopts::value<std::string>()->default_value("out/mnist_classifier.safetensors"));
  opts.add_options("common")
      ("model", "diffusers model folder (default: the shipped examples/models/mnist_superres)",
       cxxopts::value<std::string>()->default_value(""));
  examples::add_threads_help(opts, "common");
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  const int scale = option_in<int>(*r, "scale", 2, 4);
  check_superres_scale(scale);
  SuperresOptions o;
  o.sampler = examples::sampler_option(*r);
  o.steps = option_in<ddpm::index_t>(*r, "steps", 1, kMaxSamplingSteps);
  o.seed = examples::seed_option(*r);
  const bool evaluate = r->count("evaluate") > 0, degrade_only = r->count("degrade") > 0;
  ddpm::require(!(evaluate && degrade_only), "--evaluate and --degrade: choose one");
  const ddpm::index_t count = r->count("count") ? option_in<ddpm::index_t>(*r, "count", 1, 100'000) : 0;
  const auto first = option_in<ddpm::index_t>(*r, "first", 0, kMaxFirst);
  const auto data = (*r)["data"].as<std::string>(), model_dir = (*r)["model"].as<std::string>();
  const fs::path input = (*r)["input"].as<std::string>(), reference = (*r)["reference"].as<std::string>();
  const fs::path png = png_option(*r);

  if (evaluate) {
    auto unet = load_model(model_dir, "mnist_superres");
    check_superres_model(unet, model_dir.empty() ? default_model_dir("mnist_superres").string() : model_dir);
    Classifier net;
    net.load((*r)["classifier"].as<std::string>());
    const Dataset test = test_digits(data, first, count > 0 ? count : 1000);
    std::printf("super-resolution of %lld held-out digits (%s, %lld steps, seed %llu); %d threads\n",
                static_cast<long long>(test.size()), o.sampler.c_str(), static_cast<long long>(o.steps),
                static_cast<unsigned long long>(o.seed), ddpm::backend::Cpu::num_threads());
    std::vector<SuperresScore> rows;
    for (int k : kSuperresScales) rows.push_back(evaluate_superres(unet, net, test, k, o));
    std::printf("\n%s", superres_table(rows).c_str());
    return 0;
  }

  const fs::path out = (*r)["out"].as<std::string>();
  ddpm::require(out.extension() == ".idx" || out.extension() == ".idx3", "--out: expected a .idx file name, got '",
                out.string(), "'");
  // The 28x28 digits to degrade: --input, or held-out ones.
  const auto digits = [&](ddpm::index_t default_count) {
    if (input.empty()) return test_digits(data, first, count > 0 ? count : default_count).images;
    auto x = load_images(input, count);
    ddpm::require(x.dim(2) == kImageSide && x.dim(3) == kImageSide, "--input: expected 28x28 digits to degrade, got ",
                  x.dim(2), "x", x.dim(3), " (", input.string(), ")");
    return x;
  };
  if (degrade_only) {
    const auto lr = degrade(digits(16).cview(), scale);
    write_images(out, lr.cview(), 16);
    std::printf("degraded %lld digits to %lldx%lld (%dx%d box average); wrote %s\n", static_cast<long long>(lr.dim(0)),
                static_cast<long long>(lr.dim(2)), static_cast<long long>(lr.dim(3)), scale, scale,
                out.string().c_str());
    return 0;
  }

  // The low-resolution images and, when known, their originals.
  ddpm::Tensor<float> lr, original;
  if (input.empty()) {
    original = digits(16);
    lr = degrade(original.cview(), scale);
  } else {
    lr = load_images(input, count);
    check_low_res(lr.cview(), scale, "--input " + input.string());
    if (!reference.empty()) {
      original = load_images(reference, lr.dim(0));
      ddpm::require(original.dim(0) == lr.dim(0) && original.dim(2) == kImageSide && original.dim(3) == kImageSide,
                    "--reference: expected ", lr.dim(0), " digits of 28x28 (one per input image), got ",
                    original.shape().str(), " (", reference.string(), ")");
    }
  }
  auto unet = load_model(model_dir, "mnist_superres");
  check_superres_model(unet, model_dir.empty() ? default_model_dir("mnist_superres").string() : model_dir);
  const auto ours = superres(unet, lr.cview(), scale, o);
  const auto bic = bicubic(lr.cview(), scale);
  write_images(out, ours.cview(), 16);
  std::printf("super-resolved %lld digits %lldx%lld -> 28x28 (%s, %lld steps, seed %llu); wrote %s\n",
              static_cast<long long>(lr.dim(0)), static_cast<long long>(lr.dim(2)), static_cast<long long>(lr.dim(3)),
              o.sampler.c_str(), static_cast<long long>(o.steps), static_cast<unsigned long long>(o.seed),
              out.string().c_str());
  if (!original.empty()) {
    const auto fb = fidelity(bic.cview(), original.cview()), fo = fidelity(ours.cview(), original.cview());
    std::printf("against the originals: bicubic PSNR %.2f dB, SSIM %.4f; ours PSNR %.2f dB, SSIM %.4f\n", fb.psnr,
                fb.ssim, fo.psnr, fo.ssim);
  }
  if (!png.empty()) {
    const ddpm::index_t columns = std::min<ddpm::index_t>(lr.dim(0), 16);
    const auto low = nearest(lr.cview(), scale);
    const auto grid = original.empty() ? interleaved_rows({low.cview(), bic.cview(), ours.cview()}, columns)
                                       : interleaved_rows({low.cview(), bic.cview(), ours.cview(), original.cview()}, columns);
    write_images(png, grid.cview(), static_cast<int>(columns));
    std::printf("wrote %s\n", png.string().c_str());
  }
  return 0;
}

inline const std::vector<Command>& commands() {
  static const std::vector<Command> list{{"train", cmd_train},           {"sample", cmd_sample},
                                         {"denoise", cmd_denoise},       {"inpaint", cmd_inpaint},
                                         {"trajectory", cmd_trajectory}, {"classifier", cmd_classifier},
                                         {"evaluate", cmd_evaluate},     {"quality", cmd_quality},
                                         {"invert", cmd_invert},         {"translate", cmd_translate},
                                         {"evaluate-edit", cmd_evaluate_edit},
                                         {"anomaly", cmd_anomaly},       {"train-curve", cmd_train_curve},
                                         {"superres", cmd_superres}};
  return list;
}

}  // namespace mnist
