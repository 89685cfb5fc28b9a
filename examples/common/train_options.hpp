#pragma once
// The options every training command of the examples shares (--data, --out,
// --steps, --batch, --lr, --width, --ema-decay, --seed): declared with the
// command's defaults and read with the same range checks everywhere.
#include <cstdio>
#include <string>

#include <cxxopts.hpp>

#include "cli.hpp"

namespace examples {

// An options struct with the shared fields (mnist's TrainOptions, latent's
// AutoencoderTrainOptions and LatentTrainOptions).
template <class O>
concept TrainingRecipe = requires(O o) {
  o.data;
  o.out;
  o.steps;
  o.batch;
  o.lr;
  o.width;
  o.ema_decay;
  o.seed;
};

// The help texts that differ between commands.
struct RecipeHelp {
  std::string data = "folder with the train and t10k IDX files";
  std::string out = "output folder";
  std::string width = "channels of the first level (then 2x): a multiple of 8 in [8, 256]";
};

inline constexpr std::int64_t kMaxTrainingSteps = 10'000'000;

// A default value as the help shows it ("0.0015", not "0.001500").
inline std::string number_text(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

template <TrainingRecipe O>
void add_recipe_options(cxxopts::Options& opts, const O& d, const RecipeHelp& help) {
  opts.add_options()
      ("data", help.data, cxxopts::value<std::string>()->default_value(d.data.string()))
      ("out", help.out, cxxopts::value<std::string>()->default_value(d.out.string()))
      ("steps", "training steps, 1 to 10^7", number(std::to_string(d.steps)))
      ("batch", "batch size, 1 to 4096", number(std::to_string(d.batch)))
      ("lr", "peak learning rate in (0, 1] (warm-up, then cosine decay to 5%)", number(number_text(d.lr)))
      ("width", help.width, number(std::to_string(d.width)))
      ("ema-decay", "EMA decay in [0, 1)", number(number_text(d.ema_decay)))
      ("seed", "random seed", number(std::to_string(d.seed)));
}

template <TrainingRecipe O>
void read_recipe_options(const cxxopts::ParseResult& r, O& o) {
  o.data = r["data"].as<std::string>();
  o.out = r["out"].as<std::string>();
  o.steps = option_in<decltype(o.steps)>(r, "steps", 1, kMaxTrainingSteps);
  o.batch = option_in<decltype(o.batch)>(r, "batch", 1, 4096);
  o.lr = option_in<double>(r, "lr", 0, 1, Ends::open_low);
  o.width = option_in<int>(r, "width", 8, 256);
  ddpm::require(o.width % 8 == 0, "--width: expected a multiple of 8 in [8, 256], got ", o.width);
  o.ema_decay = option_in<double>(r, "ema-decay", 0, 1, Ends::open_high);
  o.seed = seed_option(r);
}

}  // namespace examples
