// The training state on its own (train/training_state.hpp, written by
// io/checkpoint.hpp): a save/load round trip restores weights, both Adam
// moments, the EMA, the step counters and the random state bit for bit; a
// checkpoint of another model is refused with one line that names the file
// and changes nothing; a failed save leaves the previous file as it was.
#include <catch2/catch.hpp>

#include <bit>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ddpm/core/parameters.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/io/checkpoint.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/train/adam.hpp"
#include "ddpm/train/ema.hpp"
#include "ddpm/train/training_state.hpp"
#include "support/show_error.hpp"

using namespace ddpm;
namespace fs = std::filesystem;

namespace {

fs::path dir() {
  const auto d = fs::path(DDPM_TEST_TMP_DIR) / "training_state";
  fs::create_directories(d);
  return d;
}

// Parameters, Adam and EMA of a two-tensor model, filled with values that
// differ per tensor, per element and per `seed`; a few Adam and EMA updates
// make every part of the state non-trivial.
template <Scalar T>
struct State {
  Parameters<T> params;
  train::Adam<T> adam;
  train::EMA<T> ema;

  State(index_t rows, std::uint64_t seed)
      : params(make_params(rows)), adam(params.numel(), {}), ema(params.values(), 0.9) {
    Rng rng(seed);
    rng.fill_normal(params.values());
    for (int s = 0; s < 3; ++s) {
      rng.fill_normal(params.grads());
      adam.step(params.values(), params.grads(), 1e-2);
      ema.update(params.values());
    }
  }
  static Parameters<T> make_params(index_t rows) {
    Parameters<T> p;
    p.add("layer.weight", {rows, 3});
    p.add("layer.bias", {rows});
    return p;
  }
};

template <class S>
std::vector<std::uint64_t> bits(const S& s) {
  std::vector<std::uint64_t> out;
  for (auto v : s) out.push_back(std::bit_cast<std::uint64_t>(static_cast<double>(v)));
  return out;
}

template <Scalar T>
void check_equal(const State<T>& a, const State<T>& b) {
  CHECK(bits(a.params.values()) == bits(b.params.values()));
  CHECK(bits(a.adam.exp_avg()) == bits(b.adam.exp_avg()));
  CHECK(bits(a.adam.exp_avg_sq()) == bits(b.adam.exp_avg_sq()));
  CHECK(bits(a.ema.weights()) == bits(b.ema.weights()));
  CHECK(a.adam.step_count() == b.adam.step_count());
  CHECK(a.ema.updates() == b.ema.updates());
}

}  // namespace

TEMPLATE_TEST_CASE("a training state round trip is bit-exact", "[training_state]", float, double) {
  using T = TestType;
  const auto path = dir() / ("round_trip_" + std::string(sizeof(T) == 4 ? "f32" : "f64") + ".safetensors");
  State<T> saved(4, 1);
  // A random state in the middle of a Box-Muller pair: the spare normal must come back too.
  Rng rng(77, 5);
  for (int i = 0; i < 7; ++i) rng.normal();
  train::TrainingProgress progress{123456789012LL, rng.state()};
  REQUIRE(progress.rng.has_spare);
  io::save_training_state(path, saved.params, saved.adam, &saved.ema, progress, {{"note", "round trip"}});

  State<T> loaded(4, 2);  // other values everywhere: all must come from the file
  REQUIRE(bits(loaded.params.values()) != bits(saved.params.values()));
  loaded.adam.set_step_count(0);
  loaded.ema.set_updates(0);
  const auto back = io::load_training_state(path, loaded.params, loaded.adam, &loaded.ema);
  check_equal(saved, loaded);
  CHECK(saved.adam.step_count() == 3);
  CHECK(back.step == progress.step);
  CHECK(back.rng.seed == 77);
  CHECK(back.rng.stream == 5);
  CHECK(back.rng.counter == progress.rng.counter);
  CHECK(back.rng.has_spare);
  CHECK(std::bit_cast<std::uint64_t>(back.rng.spare) == std::bit_cast<std::uint64_t>(progress.rng.spare));
  // The restored random state continues the same stream.
  Rng a(back.rng), b(progress.rng);
  for (int i = 0; i < 5; ++i) CHECK(a.normal() == b.normal());

  // The file is what train/training_state.hpp says it is.
  const auto st = io::SafeTensors::load(path);
  namespace key = train::checkpoint_keys;
  CHECK(st.metadata().at(key::kKind) == key::kKindValue);
  CHECK(st.metadata().at(key::kStep) == "123456789012");
  CHECK(st.metadata().at("note") == "round trip");
  for (const char* prefix : {key::kParams, key::kAdamExpAvg, key::kAdamExpAvgSq, key::kEma})
    for (const char* name : {"layer.weight", "layer.bias"}) CHECK(st.contains(std::string(prefix) + name));
  CHECK(st.tensors().size() == 8);
}

TEST_CASE("a training state of another model is refused in one line, changing nothing", "[training_state]") {
  const auto path = dir() / "other_model.safetensors";
  State<float> other(5, 1);  // 5 rows where the model has 4
  io::save_training_state(path, other.params, other.adam, &other.ema, {});

  State<float> model(4, 2);
  const State<float> before(4, 2);
  std::string msg;
  try {
    io::load_training_state(path, model.params, model.adam, &model.ema);
  } catch (const Error& e) {
    msg = e.what();
    test::show_error(msg);
  }
  INFO(msg);
  CHECK(msg.find("other_model.safetensors") != std::string::npos);
  CHECK(msg.find("does not match the model") != std::string::npos);
  CHECK(msg.find("wrong shape: params/layer.weight is [5, 3], expected [4, 3]") != std::string::npos);
  CHECK(msg.find("and 5 more") != std::string::npos);  // 8 tensors with the wrong shape, 3 named
  CHECK(msg.find('\n') == std::string::npos);
  check_equal(model, before);

  // A state saved without EMA, loaded by a run that keeps one: also refused.
  const auto no_ema = dir() / "no_ema.safetensors";
  io::save_training_state<float>(no_ema, model.params, model.adam, nullptr, {});
  CHECK_THROWS_WITH(io::load_training_state(no_ema, model.params, model.adam, &model.ema),
                    Catch::Contains("no_ema.safetensors") && Catch::Contains("missing: ema/layer.weight"));
  check_equal(model, before);
}

TEST_CASE("a failed save leaves the previous training state file as it was", "[training_state][atomic]") {
  const auto folder = dir() / "atomic";
  fs::create_directories(folder);
  const auto path = folder / "state.safetensors";
  constexpr index_t kRows = 30000;  // 1.9 MB: written in two chunks (io/file.hpp)
  State<float> first(kRows, 1);
  io::save_training_state(path, first.params, first.adam, &first.ema, {7, {}});
  const auto good = io::read_file(path);

  State<float> second(kRows, 2);
  // The disk fails after the first chunk: part of the new state has been written.
  std::size_t written = 0;
  io::write_fault_hook() = [&](std::size_t n) {
    if (written > 0) throw Error("simulated disk failure");
    written += n;
  };
  CHECK_THROWS_WITH(io::save_training_state(path, second.params, second.adam, &second.ema, {8, {}}),
                    Catch::Contains("simulated disk failure"));
  io::write_fault_hook() = nullptr;
  CHECK(written > 0);
  CHECK(io::read_file(path) == good);
  for (const auto& e : fs::directory_iterator(folder)) CHECK(e.path().filename() == "state.safetensors");

  // The surviving file still loads, as the first state.
  State<float> back(kRows, 3);
  CHECK(io::load_training_state(path, back.params, back.adam, &back.ema).step == 7);
  check_equal(first, back);
}
