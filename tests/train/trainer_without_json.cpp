// train/ needs only the core: this program is compiled with nothing but
// include/, tests/ and Eigen on its include path and without the ddpm::ddpm
// target's optional libraries (tests/CMakeLists.txt, target
// train_without_json), and fails to compile if any train/ header pulls in
// the JSON library, zlib or stb. Run, it trains the toy denoiser and checks
// that the loss falls and that EmaScope swaps the EMA weights in and out.
#include <cstdio>
#include <vector>

#include "ddpm/train/adam.hpp"
#include "ddpm/train/ema.hpp"
#include "ddpm/train/grad_clip.hpp"
#include "ddpm/train/loss.hpp"
#include "ddpm/train/lr_schedule.hpp"
#include "ddpm/train/trainer.hpp"
#include "ddpm/train/training_loop.hpp"
#include "ddpm/train/training_state.hpp"
#include "support/toy_denoiser.hpp"

#if defined(NLOHMANN_JSON_VERSION_MAJOR) || defined(INCLUDE_NLOHMANN_JSON_HPP_)
#error "a train/ header includes nlohmann/json.hpp"
#endif
#if defined(ZLIB_VERSION) || defined(STBI_VERSION) || defined(INCLUDE_STB_IMAGE_WRITE_H)
#error "a train/ header includes zlib or stb"
#endif

using namespace ddpm;

using ToyTrainer = train::Trainer<double, test::Toy<double>>;
static_assert(train::TrainingLoop<ToyTrainer>);

int main() {
  int failures = 0;
  const auto check = [&](bool ok, const char* what) {
    if (!ok) ++failures;
    std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
  };
  NoiseSchedule<double> schedule({.num_train_timesteps = 100});
  test::Toy<double> model(4);
  ToyTrainer trainer(model, schedule, test::toy_train_config());
  const auto x0 = test::toy_data<double>(64, 4, 9);
  double first = 0, last = 0;
  for (int s = 0; s < 200; ++s) {
    const auto st = trainer.step(x0.cview());
    if (s < 20) first += st.loss / 20;
    if (s >= 180) last += st.loss / 20;
  }
  std::printf("mean loss over steps 0-19: %.4f, over steps 180-199: %.4f\n", first, last);
  check(last < 0.8 * first, "the loss falls by more than 20%");
  check(trainer.steps_done() == 200, "200 steps done");

  const auto values = model.parameters().values();
  const std::vector<double> live(values.begin(), values.end());
  const auto ema = trainer.ema()->weights();
  bool differ = false, in = true, out = true;
  for (std::size_t i = 0; i < live.size(); ++i) differ |= live[i] != ema[i];
  {
    const train::EmaScope<double> use_ema(trainer.ema(), values);
    for (std::size_t i = 0; i < live.size(); ++i) in &= values[i] == ema[i];
  }
  for (std::size_t i = 0; i < live.size(); ++i) out &= values[i] == live[i];
  check(differ, "the EMA weights differ from the live ones");
  check(in, "inside EmaScope the model holds the EMA weights");
  check(out, "after EmaScope the model holds its trained weights again");
  return failures == 0 ? 0 : 1;
}
