#pragma once
// The subcommands of latent_diffusion: option parsing, then a call into the
// header that does the work (train.hpp, generate.hpp).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "ddpm/io/idx.hpp"
#include "../common/cli.hpp"
#include "../common/train_options.hpp"
#include "../mnist/classifier.hpp"
#include "../mnist/commands.hpp"
#include "generate.hpp"
#include "train.hpp"

namespace latent {

using examples::Ends;
using examples::option_in;
using mnist::Command;


// --model: a folder with vae/ and unet/ (default: the shipped models).
inline void add_model(cxxopts::Options& opts) {
  opts.add_options("common")
      ("model", "folder with vae/ and unet/ (default: the shipped examples/models/latent_mnist)",
       cxxopts::value<std::string>()->default_value(""));
  examples::add_threads_help(opts, "common");
}
inline fs::path model_option(const cxxopts::ParseResult& r) {
  const auto m = r["model"].as<std::string>();
  const fs::path dir = m.empty() ? default_models_dir() : fs::path(m);
  ddpm::require(fs::is_directory(dir), "--model: ", dir.string(), ": no such folder (expected vae/ and unet/)");
  return dir;
}

inline int cmd_train_autoencoder(int argc, char** argv) {
  cxxopts::Options opts(argv[0], "Train the AutoencoderKL (28x28 digits <-> 14x14 latents); writes <out>/vae.");
  const AutoencoderTrainOptions d;
  examples::add_recipe_options(opts, d, {.out = "output folder: the model goes to <out>/vae"});
  opts.add_options()
      ("latent-channels", "latent channels, 1 to 16", examples::number(std::to_string(d.latent_channels)))
      ("kl-weight", "weight of the KL term in [0, 1]", examples::number(examples::number_text(d.kl_weight)));
  examples::add_threads_help(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  AutoencoderTrainOptions o;
  examples::read_recipe_options(*r, o);
  o.latent_channels = option_in<int>(*r, "latent-channels", 1, 16);
  o.kl_weight = option_in<double>(*r, "kl-weight", 0, 1);
  return train_autoencoder(o);
}

inline int cmd_train(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "Train the class-conditional U-Net on the autoencoder's scaled latents; writes <out>/unet and\n"
                        "<out>/scheduler.");
  const LatentTrainOptions d;
  examples::add_recipe_options(
      opts, d,
      {.data = "folder with train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]",
       .out = "output folder: <out>/unet (EMA weights), <out>/scheduler",
       .width = "channels of the first U-Net level (then 2x): a multiple of 8 in [8, 256]"});
  opts.add_options()
      ("autoencoder", "the autoencoder: a model folder, or a folder with vae/",
       cxxopts::value<std::string>()->default_value(d.autoencoder.string()))
      ("label-dropout", "probability in [0, 1] of training with the null label (for guidance)", examples::number("0.1"));
  examples::add_threads_help(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  LatentTrainOptions o;
  examples::read_recipe_options(*r, o);
  o.autoencoder = (*r)["autoencoder"].as<std::string>();
  o.label_dropout = option_in<double>(*r, "label-dropout", 0, 1);
  return train_latent(o);
}

// The two models of --model.
struct Models {
  VAE vae;
  UNet unet;
};
inline Models load_models(const fs::path& dir) {
  VAE vae = load_vae(dir / "vae");
  UNet unet = load_unet(dir / "unet", vae);
  return {std::move(vae), std::move(unet)};
}

inline int cmd_sample(int argc, char** argv) {
  cxxopts::Options opts(argv[0], "Generate digits in latent space and decode them.");
  opts.add_options()
      ("label", "digit 0-9 to generate (default: mixed labels, row r of the grid is digit r mod 10)", examples::number())
      ("count", "number of digits, 1 to 100000", examples::number("100"))
      ("columns", "PNG grid columns, 1 to 1000", examples::number("10"))
      ("out", "output .png (grid) or .idx (IDX3 unsigned bytes, N x 28 x 28)",
       cxxopts::value<std::string>()->default_value("latent_samples.png"));
  mnist::add_sampling(opts);
  add_model(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  const auto count = option_in<ddpm::index_t>(*r, "count", 1, 100'000);
  const int columns = option_in<int>(*r, "columns", 1, 1000);
  const int label = r->count("label") ? option_in<int>(*r, "label", 0, kNumClasses - 1) : -1;
  const auto o = mnist::generate_options(*r);
  const fs::path out = mnist::out_option(*r);
  std::vector<std::int64_t> labels(static_cast<std::size_t>(count));
  for (ddpm::index_t i = 0; i < count; ++i)
    labels[static_cast<std::size_t>(i)] = label >= 0 ? label : (i / columns) % kNumClasses;
  auto m = load_models(model_option(*r));
  const auto images = generate(m.unet, m.vae, labels, o);
  mnist::write_images(out, images.cview(), columns);
  std::printf("wrote %lld digits (%s, %lld steps, guidance %g) to %s\n", static_cast<long long>(count),
              o.sampler.c_str(), static_cast<long long>(o.steps), o.guidance, out.string().c_str());
  return 0;
}

inline int cmd_reconstruct(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "Encode digits (posterior mean) and decode them; prints the PSNR of the reconstruction.");
  opts.add_options()
      ("input", "IDX3 file of 28x28 digits (unsigned bytes)", cxxopts::value<std::string>()->default_value(""))
      ("out", "output IDX3 file of the reconstructions", cxxopts::value<std::string>()->default_value("recon.idx"))
      ("png", "also write a PNG: rows of inputs over their reconstructions (up to 20 digits)",
       cxxopts::value<std::string>()->default_value(""));
  add_model(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  const std::string input = (*r)["input"].as<std::string>();
  ddpm::require(!input.empty(), "--input: expected an IDX3 file of 28x28 digits");
  const fs::path out = (*r)["out"].as<std::string>();
  ddpm::require(out.extension() == ".idx" || out.extension() == ".idx3", "--out: expected a .idx file name, got '",
                out.string(), "'");
  const fs::path png = (*r)["png"].as<std::string>();
  ddpm::require(png.empty() || png.extension() == ".png", "--png: expected a .png file name, got '", png.string(), "'");
  const auto images = ddpm::io::load_idx_images<float>(input);
  require_digits(images.cview(), input);
  VAE vae = load_vae(model_option(*r) / "vae");
  ddpm::Tensor<float> recon;
  const double p = reconstruction_psnr(vae, images.cview(), &recon);
  mnist::write_images(out, recon.cview(), 10);
  if (!png.empty()) {
    const ddpm::index_t k = std::min<ddpm::index_t>(20, images.dim(0));
    const auto grid = mnist::stack_rows({images.cview().slice(0, k), recon.cview().slice(0, k)});
    mnist::write_images(png, grid.cview(), static_cast<int>(k));
  }
  std::printf("reconstructed %lld digits: PSNR %.2f dB; wrote %s\n", static_cast<long long>(images.dim(0)), p,
              out.string().c_str());
  return 0;
}

inline int cmd_trajectory(int argc, char** argv) {
  cxxopts::Options opts(argv[0], "Write the decoded latent x_t along the reverse process as a PNG (one row per digit).");
  opts.add_options()
      ("label", "digit 0-9 (default: one row per digit 0-9)", examples::number())
      ("snapshots", "columns: x_T, ..., x_0; 2 to steps + 1", examples::number("11"))
      ("out", "output PNG", cxxopts::value<std::string>()->default_value("latent_trajectory.png"));
  mnist::add_sampling(opts);
  add_model(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  const auto o = mnist::generate_options(*r);
  const int snaps = option_in<int>(*r, "snapshots", 2, static_cast<int>(o.steps) + 1);
  std::vector<std::int64_t> labels;
  if (r->count("label")) labels.push_back(option_in<int>(*r, "label", 0, kNumClasses - 1));
  else for (int k = 0; k < kNumClasses; ++k) labels.push_back(k);
  const fs::path out = (*r)["out"].as<std::string>();
  ddpm::require(out.extension() == ".png", "--out: expected a .png file name, got '", out.string(), "'");
  auto m = load_models(model_option(*r));
  const auto strip = trajectory(m.unet, m.vae, labels, snaps, o);
  mnist::write_images(out, strip.cview(), snaps);
  std::printf("wrote %zu trajectories of %d decoded snapshots (%s, %lld steps) to %s\n", labels.size(), snaps,
              o.sampler.c_str(), static_cast<long long>(o.steps), out.string().c_str());
  return 0;
}

inline int cmd_evaluate(int argc, char** argv) {
  cxxopts::Options opts(argv[0],
                        "Measure the latent model: (a) the autoencoder's reconstruction PSNR on held-out digits, (b) the\n"
                        "fraction of class-conditional samples classified as the requested digit and the Frechet\n"
                        "distance of classifier features, (c) time and flops per sample against mnist_diffusion's\n"
                        "pixel-space model at the same sampler, steps and guidance, side by side.");
  opts.add_options()
      ("data", "folder with the train and t10k IDX files", cxxopts::value<std::string>()->default_value("data/mnist"))
      ("classifier", "classifier weights (from `mnist_diffusion classifier`)",
       cxxopts::value<std::string>()->default_value("out/mnist_classifier.safetensors"))
      ("pixel-model", "the pixel-space diffusers U-Net folder (default: the shipped examples/models/mnist_cond)",
       cxxopts::value<std::string>()->default_value(""))
      ("per-class", "samples per digit, 1 to 10000", examples::number("30"))
      ("pixel-count", "pixel-space samples timed, 0 to 10000 (0: skip the timing)", examples::number("20"))
      ("recon-count", "held-out digits reconstructed, 1 to 10000", examples::number("1000"));
  mnist::add_sampling(opts);
  add_model(opts);
  const auto r = examples::parse_options(opts, argc, argv);
  if (!r) return 0;
  const auto per_class = option_in<ddpm::index_t>(*r, "per-class", 1, 10'000), n = per_class * kNumClasses;
  const auto pixel_count = option_in<ddpm::index_t>(*r, "pixel-count", 0, 10'000);
  const auto recon_count = option_in<ddpm::index_t>(*r, "recon-count", 1, 10'000);
  auto o = mnist::generate_options(*r);
  o.progress = false;
  const fs::path dir = model_option(*r);
  auto m = load_models(dir);
  auto pixel = mnist::load_model((*r)["pixel-model"].as<std::string>());
  const Dataset train = mnist::load_split((*r)["data"].as<std::string>(), "train");
  const Dataset test = mnist::load_split((*r)["data"].as<std::string>(), "t10k");
  mnist::Classifier net;
  net.load((*r)["classifier"].as<std::string>());

  // (a) Reconstruction.
  const ddpm::index_t nr = std::min(recon_count, test.size());
  std::printf("(a) autoencoder: held-out reconstruction PSNR %.2f dB (%lld test digits)\n",
              reconstruction_psnr(m.vae, test.images.cview().slice(0, nr)), static_cast<long long>(nr));

  // (b) Sample quality with the classifier.
  ddpm::Tensor<float> test_features, train_features, f;
  const auto test_pred = mnist::classify(net, test.images.cview(), &test_features);
  const ddpm::index_t ref_n = std::min(n, train.size());
  mnist::classify(net, train.images.cview().slice(0, ref_n), &train_features);
  std::vector<std::int64_t> labels(static_cast<std::size_t>(n));
  for (ddpm::index_t i = 0; i < n; ++i) labels[static_cast<std::size_t>(i)] = i % kNumClasses;
  const auto t0 = std::chrono::steady_clock::now();
  const auto samples = generate(m.unet, m.vae, labels, o);
  const double latent_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto pred = mnist::classify(net, samples.cview(), &f);
  std::printf("(b) samples (%s, %lld steps, guidance %g, %lld samples): classified as the requested digit %.1f%%, "
              "Frechet distance %.3f (real training vs held-out digits: %.3f; classifier held-out accuracy %.2f%%)\n"
              "    per digit:",
              o.sampler.c_str(), static_cast<long long>(o.steps), o.guidance, static_cast<long long>(n),
              100.0 * mnist::accuracy(pred, labels), mnist::frechet_distance(f.cview(), test_features.cview()),
              mnist::frechet_distance(train_features.cview(), test_features.cview()),
              100.0 * mnist::accuracy(test_pred, test.labels));
  for (int k = 0; k < kNumClasses; ++k) {
    int ok = 0, tot = 0;
    for (std::size_t i = 0; i < labels.size(); ++i)
      if (labels[i] == k) ++tot, ok += pred[i] == k;
    std::printf(" %d:%.0f%%", k, 100.0 * ok / std::max(tot, 1));
  }
  std::printf("\n");

  // (c) Cost per sample, side by side.
  const double evals = evaluations_per_sample(o);
  const double latent_flops =
      evals * unet_flops(m.unet.config(), latent_side(m.vae)) + decode_flops(m.vae.config(), latent_side(m.vae));
  const double pixel_flops = evals * unet_flops(pixel.config(), kImageSide);
  std::printf("(c) per sample (%s, %lld steps, guidance %g):\n", o.sampler.c_str(), static_cast<long long>(o.steps),
              o.guidance);
  std::printf("    latent: %8.2f ms, %8.1f MFLOP (U-Net %lld params on %lldx%lldx%d, + one decode)\n",
              1e3 * latent_secs / static_cast<double>(n), latent_flops / 1e6,
              static_cast<long long>(m.unet.num_parameters()), static_cast<long long>(latent_side(m.vae)),
              static_cast<long long>(latent_side(m.vae)), m.vae.config().latent_channels);
  if (pixel_count > 0) {
    std::vector<std::int64_t> pixel_labels(labels.begin(), labels.begin() + std::min(n, pixel_count));
    while (static_cast<ddpm::index_t>(pixel_labels.size()) < pixel_count)
      pixel_labels.push_back(static_cast<std::int64_t>(pixel_labels.size() % kNumClasses));
    const auto t1 = std::chrono::steady_clock::now();
    mnist::generate(pixel, pixel_labels, o);
    const double pixel_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    std::printf("    pixel:  %8.2f ms, %8.1f MFLOP (U-Net %lld params on 28x28x1)\n",
                1e3 * pixel_secs / static_cast<double>(pixel_count), pixel_flops / 1e6,
                static_cast<long long>(pixel.num_parameters()));
    std::printf("    latent sampling is %.1fx faster and %.1fx fewer flops per sample\n",
                (pixel_secs / static_cast<double>(pixel_count)) / (latent_secs / static_cast<double>(n)),
                pixel_flops / latent_flops);
  } else {
    std::printf("    pixel:  %8.1f MFLOP; latent sampling needs %.1fx fewer flops per sample\n", pixel_flops / 1e6,
                pixel_flops / latent_flops);
  }
  return 0;
}

inline const std::vector<Command>& commands() {
  static const std::vector<Command> list{{"train-autoencoder", cmd_train_autoencoder},
                                         {"train", cmd_train},
                                         {"sample", cmd_sample},
                                         {"reconstruct", cmd_reconstruct},
                                         {"trajectory", cmd_trajectory},
                                         {"evaluate", cmd_evaluate}};
  return list;
}

}  // namespace latent
