// Training faults and checkpoints that cannot be lost:
// - a save interrupted part-way (simulated failing write) leaves the previous
//   checkpoint intact, loadable and resumable, with no temporary left behind;
// - a non-finite gradient stops training with the step and the parameter named,
//   nothing is saved over the good checkpoint, and resume continues from it;
// - every way a checkpoint can fail to load leaves the model, the optimizer,
//   the EMA and the step count as they were.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "ddpm/io/checkpoint.hpp"
#include "ddpm/io/state_dict.hpp"
#include "ddpm/train/trainer.hpp"
#include "support/show_error.hpp"
#include "support/toy_denoiser.hpp"

using namespace ddpm;
namespace fs = std::filesystem;

namespace {

template <Scalar T>
Tensor<T> data(index_t n, index_t d, std::uint64_t seed) {
  return test::toy_data<T>(n, d, seed);
}

ScheduleConfig schedule_config() {
  ScheduleConfig c;
  c.num_train_timesteps = 50;
  return c;
}

train::TrainConfig config(std::uint64_t seed = 3) { return test::toy_train_config(seed); }

fs::path dir() {
  const auto d = fs::path(DDPM_TEST_TMP_DIR) / "hardening_train";
  fs::create_directories(d);
  return d;
}

std::vector<char> bytes_of(const fs::path& p) { return io::read_file(p); }

template <class V>
std::vector<typename V::value_type> copy(const V& v) {
  return {v.begin(), v.end()};
}

// The full training state of a trainer, to prove a failed load changed nothing.
template <Scalar T, class Tr>
struct Snapshot {
  std::vector<T> w, m, v, ema;
  std::int64_t steps = 0, adam_steps = 0, ema_updates = 0;
  explicit Snapshot(Tr& t)
      : w(copy(t.model().parameters().values())), m(copy(t.optimizer().exp_avg())),
        v(copy(t.optimizer().exp_avg_sq())), ema(copy(t.ema()->weights())), steps(t.steps_done()),
        adam_steps(t.optimizer().step_count()), ema_updates(t.ema()->updates()) {}
  bool operator==(const Snapshot&) const = default;
};

void expect_no_temporaries(const fs::path& folder) {
  for (const auto& e : fs::directory_iterator(folder)) {
    INFO(e.path());
    CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
  }
}

using Toy = test::Toy<float>;
using ToyTrainer = train::Trainer<float, Toy>;

}  // namespace

TEST_CASE("a training checkpoint save interrupted part-way leaves the previous one loadable", "[hardening][atomic]") {
  const auto folder = dir() / "interrupted";
  fs::create_directories(folder);
  const auto ckpt = folder / "ckpt.safetensors";
  NoiseSchedule<float> schedule(schedule_config());
  const auto x0 = data<float>(8, 64, 2);  // 65 x 64 weights: a save of several chunks
  Toy m(64);
  ToyTrainer t(m, schedule, config());
  for (int s = 0; s < 3; ++s) t.step(x0.cview());
  t.save(ckpt);
  const auto good = bytes_of(ckpt);
  const Snapshot<float, ToyTrainer> at3(t);
  for (int s = 0; s < 2; ++s) t.step(x0.cview());

  // The disk fails after some bytes of the new checkpoint were written, at
  // several points (first chunk, middle, just before the end).
  for (std::size_t fail_after : {std::size_t{0}, std::size_t{1000}, good.size() / 2, good.size() - 1}) {
    std::size_t written = 0;
    io::write_fault_hook() = [&](std::size_t n) {
      if (written + n > fail_after) throw Error("simulated disk failure (disk full)");
      written += n;
    };
    INFO("failing after " << fail_after << " bytes");
    CHECK_THROWS_WITH(t.save(ckpt), Catch::Contains("simulated disk failure"));
    io::write_fault_hook() = nullptr;
    CHECK(bytes_of(ckpt) == good);
    expect_no_temporaries(folder);
  }
  // The previous checkpoint resumes exactly where it was saved.
  Toy m2(64, 0, 99);
  ToyTrainer t2(m2, schedule, config());
  t2.resume(ckpt);
  CHECK(Snapshot<float, ToyTrainer>(t2) == at3);
  CHECK(t2.steps_done() == 3);
}

TEST_CASE("a non-finite gradient names the step and the parameter and changes nothing", "[hardening][nonfinite]") {
  NoiseSchedule<double> schedule(schedule_config());
  test::Toy<double> m(3);
  train::Trainer<double, test::Toy<double>> t(m, schedule, config());
  const auto x0 = data<double>(4, 3, 1);
  t.step(x0.cview());
  t.step(x0.cview());
  const auto w = copy(m.parameters().values());
  const auto moments = copy(t.optimizer().exp_avg());
  const auto ema = copy(t.ema()->weights());
  for (double bad : {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    const double loss = t.compute_gradients(x0.cview());
    REQUIRE(std::isfinite(loss));
    // A finite loss with a non-finite gradient in the bias (as an overflow in
    // one layer's backward gives).
    m.parameters().grad(m.parameters().id("lin.bias"))[1] = bad;
    std::string msg;
    try {
      t.apply_update(loss);
    } catch (const Error& e) {
      msg = e.what();
      test::show_error(msg);
    }
    INFO(msg);
    CHECK(msg.find("training step 2") != std::string::npos);
    CHECK(msg.find("gradient norm is") != std::string::npos);
    CHECK(msg.find("parameter 'lin.bias'") != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
    CHECK(copy(m.parameters().values()) == w);
    CHECK(copy(t.optimizer().exp_avg()) == moments);
    CHECK(copy(t.ema()->weights()) == ema);
    CHECK(t.steps_done() == 2);
  }
  // An infinite loss (not NaN) is refused too.
  CHECK_THROWS_WITH(t.apply_update(std::numeric_limits<double>::infinity()),
                    Catch::Contains("training step 2: loss is inf"));
}

TEST_CASE("divergence saves nothing over the good checkpoint and resume continues from it", "[hardening][nonfinite]") {
  const auto folder = dir() / "diverge";
  fs::create_directories(folder);
  const auto ckpt = folder / "ckpt.safetensors";
  NoiseSchedule<float> schedule(schedule_config());
  auto x0 = data<float>(6, 3, 4);
  // Reference: 8 uninterrupted steps on good data.
  Toy ref(3);
  ToyTrainer tref(ref, schedule, config());
  for (int s = 0; s < 8; ++s) tref.step(x0.cview());

  // A training loop as the examples run it: save every 4 steps; a bad batch
  // at step 6 stops it.
  Toy m(3);
  ToyTrainer t(m, schedule, config());
  auto bad = x0;
  bad[5] = std::numeric_limits<float>::infinity();
  std::string msg;
  try {
    for (int s = 0; s < 8; ++s) {
      t.step(s == 6 ? bad.cview() : x0.cview());
      if (t.steps_done() % 4 == 0) t.save(ckpt);
    }
  } catch (const Error& e) {
    msg = e.what();
    test::show_error(msg);
  }
  INFO(msg);
  CHECK(msg.find("training step 6") != std::string::npos);
  CHECK(t.steps_done() == 6);
  const auto saved = bytes_of(ckpt);
  // The checkpoint is the one from step 4.
  Toy m2(3, 0, 5);
  ToyTrainer t2(m2, schedule, config());
  t2.resume(ckpt);
  CHECK(t2.steps_done() == 4);
  // Resuming on good data reproduces the uninterrupted run bit for bit.
  for (int s = 4; s < 8; ++s) t2.step(x0.cview());
  CHECK(copy(m2.parameters().values()) == copy(ref.parameters().values()));
  CHECK(bytes_of(ckpt) == saved);
  expect_no_temporaries(folder);
}

TEST_CASE("a checkpoint that does not fit leaves the trainer as it was", "[hardening][resume]") {
  const auto folder = dir() / "misfit";
  fs::create_directories(folder);
  NoiseSchedule<float> schedule(schedule_config());
  const auto x0 = data<float>(4, 3, 7);

  // Checkpoints to load: another width, another scalar type, another seed, no EMA.
  {
    test::Toy<float> wide(4);
    train::Trainer<float, test::Toy<float>> tw(wide, schedule, config());
    tw.save(folder / "wide.safetensors");
    NoiseSchedule<double> schedule_d(schedule_config());
    test::Toy<double> dbl(3);
    train::Trainer<double, test::Toy<double>> td(dbl, schedule_d, config());
    td.save(folder / "double.safetensors");
    Toy other(3);
    ToyTrainer to(other, schedule, config(11));
    to.step(x0.cview());
    to.save(folder / "seed11.safetensors");
    auto c = config();
    c.use_ema = false;
    Toy noema(3);
    ToyTrainer tn(noema, schedule, c);
    tn.save(folder / "noema.safetensors");
    io::state_dict_writer(noema.parameters()).save(folder / "weights_only.safetensors");
  }
  Toy good(3);
  ToyTrainer tg(good, schedule, config());
  for (int s = 0; s < 2; ++s) tg.step(x0.cview());
  tg.save(folder / "good.safetensors");
  // Truncated copies of a good checkpoint.
  const auto full = bytes_of(folder / "good.safetensors");
  std::ofstream(folder / "cut.safetensors", std::ios::binary).write(full.data(), static_cast<std::streamsize>(full.size() - 3));
  std::ofstream(folder / "cut_header.safetensors", std::ios::binary).write(full.data(), 100);

  Toy m(3, 0, 42);
  ToyTrainer t(m, schedule, config());
  t.step(x0.cview());
  const Snapshot<float, ToyTrainer> before(t);
  struct Case {
    const char* file;
    std::vector<const char*> fragments;
  };
  const Case cases[] = {
      {"wide.safetensors", {"does not match the model", "wrong shape: params/lin.weight is [4, 5], expected [3, 4]"}},
      {"double.safetensors", {"wrong dtype: params/lin.weight is F64, expected F32"}},
      {"seed11.safetensors", {"trained with seed 11, this run uses seed 3"}},
      {"noema.safetensors", {"missing: ema/lin.weight"}},
      {"weights_only.safetensors", {"not a ddpm training checkpoint"}},
      {"cut.safetensors", {"outside"}},
      {"cut_header.safetensors", {"truncated"}},
      {"absent.safetensors", {"file not found"}},
  };
  for (const auto& c : cases) {
    std::string msg;
    try {
      t.resume(folder / c.file);
    } catch (const Error& e) {
      msg = e.what();
      test::show_error(msg);
    }
    INFO(c.file << " -> " << msg);
    CHECK(msg.find(c.file) != std::string::npos);
    for (const char* f : c.fragments) CHECK(msg.find(f) != std::string::npos);
    CHECK(Snapshot<float, ToyTrainer>(t) == before);
  }
  // And a good one still loads afterwards.
  t.resume(folder / "good.safetensors");
  CHECK(t.steps_done() == 2);
}

TEST_CASE("tampered checkpoint metadata is refused before anything is loaded", "[hardening][resume]") {
  const auto folder = dir() / "tampered";
  fs::create_directories(folder);
  NoiseSchedule<float> schedule(schedule_config());
  const auto x0 = data<float>(4, 3, 8);
  Toy src(3);
  ToyTrainer ts(src, schedule, config());
  ts.step(x0.cview());
  ts.save(folder / "good.safetensors");
  const auto st = io::SafeTensors::load(folder / "good.safetensors");

  // Rewrites the checkpoint with one metadata value replaced.
  auto with_meta = [&](const std::string& key, const std::string& value) {
    io::SafeTensorsWriter w;
    for (const auto& name : st.names()) w.add(name, st.get<float>(name));
    for (const auto& [k, v] : st.metadata()) w.set_metadata(k, k == key ? value : v);
    const auto p = folder / ("meta_" + key + ".safetensors");
    w.save(p);
    return p;
  };
  Toy m(3, 0, 42);
  ToyTrainer t(m, schedule, config());
  const Snapshot<float, ToyTrainer> before(t);
  struct Case {
    const char* key;
    const char* value;
    const char* fragment;
  };
  const Case cases[] = {
      {"ddpm.step", "abc", "metadata 'ddpm.step' = 'abc' is not an unsigned integer"},
      {"ddpm.step", "12x", "metadata 'ddpm.step' = '12x' is not"},
      {"ddpm.step", "-1", "metadata 'ddpm.step' = '-1' is not an unsigned integer"},
      {"ddpm.step", "99999999999999999999999", "is not"},
      {"ddpm.adam_step", "", "metadata 'ddpm.adam_step' = '' is not"},
      {"ddpm.kind", "weights", "not a ddpm training checkpoint"},
  };
  for (const auto& c : cases) {
    const auto p = with_meta(c.key, c.value);
    std::string msg;
    try {
      t.resume(p);
    } catch (const Error& e) {
      msg = e.what();
      test::show_error(msg);
    }
    INFO(c.key << " = '" << c.value << "' -> " << msg);
    CHECK(msg.find(p.filename().string()) != std::string::npos);
    CHECK(msg.find(c.fragment) != std::string::npos);
    CHECK(Snapshot<float, ToyTrainer>(t) == before);
  }
}
