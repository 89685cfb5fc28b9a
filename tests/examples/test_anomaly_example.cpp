// The anomaly example's helpers: AUROC against closed-form cases, the
// synthetic defects (deterministic, masks where they drew), and the shipped
// model's scores reproducible across runs, batch sizes and thread counts.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../../examples/common/auroc.hpp"
#include "../../examples/mnist/anomaly.hpp"
#include "../../examples/mnist/commands.hpp"
#include "ddpm/io/idx.hpp"

namespace fs = std::filesystem;
using ddpm::index_t;

namespace {

std::string message_of(const auto& f) {
  try {
    f();
  } catch (const ddpm::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// n digit-like images: a vertical bar of ink, shifted per image.
ddpm::Tensor<float> bars(index_t n) {
  ddpm::Tensor<float> x({n, 1, 28, 28});
  for (index_t i = 0; i < x.numel(); ++i) x[i] = -1.0f;
  for (index_t i = 0; i < n; ++i)
    for (int y = 4; y < 24; ++y)
      for (int dx = 0; dx < 3; ++dx) x[i * 784 + y * 28 + 10 + (i % 6) + dx] = 1.0f;
  return x;
}

}  // namespace

TEST_CASE("auroc: closed-form cases", "[examples][anomaly]") {
  using examples::auroc;
  const std::vector<double> low{0.1, 0.2, 0.3}, high{0.4, 0.5};
  CHECK(auroc(low, high) == 1.0);  // perfect separation
  CHECK(auroc(high, low) == 0.0);  // reversed
  const std::vector<double> same{1, 1, 1};
  CHECK(auroc(same, std::vector<double>{1, 1}) == 0.5);  // all tied
  // Hand-computed: negatives {1, 3, 5}, positives {2, 3, 6}. Pairs (p > n) + 1/2 (p = n):
  // 2: beats 1 -> 1; 3: beats 1, ties 3 -> 1.5; 6: beats all -> 3. (1 + 1.5 + 3) / 9.
  CHECK(auroc(std::vector<double>{1, 3, 5}, std::vector<double>{2, 3, 6}) == Approx(5.5 / 9));
  // The labelled form, in any order.
  const std::vector<double> s{6, 1, 3, 2, 5, 3};
  const std::vector<std::uint8_t> pos{1, 0, 0, 1, 0, 1};
  CHECK(auroc(s, pos) == Approx(5.5 / 9));
  CHECK(message_of([&] { auroc(low, std::vector<double>{}); }) ==
        "auroc: needs at least one positive and one negative, got 0 and 3");
  CHECK(message_of([&] { auroc(low, std::vector<double>{std::nan("")}); }) == "auroc: a score is not finite (nan)");
}

TEST_CASE("anomaly example: defects are deterministic, cycle through the kinds and have masks where drawn",
          "[examples][anomaly]") {
  const auto x = bars(9);
  const auto a = mnist::add_defects(x.cview(), 7), b = mnist::add_defects(x.cview(), 7);
  REQUIRE(a.kinds.size() == 9);
  for (index_t i = 0; i < a.images.numel(); ++i) {
    REQUIRE(a.images[i] == b.images[i]);
    REQUIRE(a.masks[i] == b.masks[i]);
  }
  for (index_t i = 0; i < 9; ++i) {
    CHECK(static_cast<int>(a.kinds[static_cast<std::size_t>(i)]) == i % 3);
    index_t marked = 0, changed = 0;
    for (index_t p = 0; p < 784; ++p) {
      const index_t k = i * 784 + p;
      const bool moved = std::abs(a.images[k] - x[k]) > 1.0f;
      marked += a.masks[k] > 0.5f;
      changed += moved;
      CHECK((a.masks[k] > 0.5f) == moved);  // the mask is exactly where the image changed
    }
    CHECK(marked >= mnist::kMinDefectPixels);
    CHECK(changed == marked);
  }
  // A missing stroke only erases ink; a scratch and a blob only add it.
  for (index_t k = 0; k < 784; ++k) {
    CHECK(a.images[2 * 784 + k] <= x[2 * 784 + k]);
    CHECK(a.images[k] >= x[k]);
    CHECK(a.images[784 + k] >= x[784 + k]);
  }
  // Another seed draws other defects; an image's defect depends on its index, not its batch.
  const auto c = mnist::add_defects(x.cview(), 8);
  bool differs = false;
  for (index_t i = 0; i < c.images.numel(); ++i) differs |= c.images[i] != a.images[i];
  CHECK(differs);
  const auto tail = mnist::add_defects(x.cview().slice(4, 5), 7, 4);
  for (index_t i = 0; i < tail.images.numel(); ++i) REQUIRE(tail.images[i] == a.images[4 * 784 + i]);
  CHECK(tail.kinds[0] == mnist::DefectKind::blob);
  // Nothing to erase on a blank image.
  ddpm::Tensor<float> blank({1, 1, 28, 28});
  for (index_t i = 0; i < blank.numel(); ++i) blank[i] = -1.0f;
  CHECK(message_of([&] { mnist::add_defects(blank.cview(), 0, 2); }) ==
        "add_defects: image 2 has no room for a missing stroke (blank image?)");
}

TEST_CASE("anomaly example: scores are reproducible run to run and across thread counts", "[examples][anomaly]") {
  // Bit-identical run to run and across thread counts for a given batch size
  // (the Cpu backend splits inference work in fixed chunks). Across batch
  // sizes its kernels block the batch differently, so those agree to
  // rounding; an image keeps its noise streams either way.
  auto unet = mnist::load_model((std::filesystem::path(DDPM_SOURCE_DIR) / "examples" / "models" / "mnist_cond").string());
  const auto x = bars(3);
  mnist::AnomalyRun o;
  o.steps = 20;  // 5 steps from t = 250
  o.draws = 2;
  o.progress = false;
  const int saved = ddpm::backend::Cpu::num_threads();
  std::vector<std::vector<double>> scores;
  std::vector<ddpm::Tensor<float>> maps;
  for (const auto& [threads, batch] : {std::pair{1, 3}, std::pair{2, 3}, std::pair{2, 3}, std::pair{1, 2},
                                       std::pair{2, 2}}) {
    ddpm::backend::Cpu::set_num_threads(threads);
    o.batch = batch;
    const auto r = mnist::score_images(unet, x.cview(), o);
    scores.push_back(r.scores);
    maps.push_back(r.maps);
  }
  ddpm::backend::Cpu::set_num_threads(saved);
  const auto same_maps = [&](std::size_t a, std::size_t b) {
    for (index_t i = 0; i < maps[a].numel(); ++i)
      if (maps[a][i] != maps[b][i]) return false;
    return true;
  };
  CHECK(scores[2] == scores[1]);  // the same run again
  CHECK(same_maps(1, 2));
  CHECK(scores[1] == scores[0]);  // 2 threads against 1, batch 3
  CHECK(same_maps(0, 1));
  CHECK(scores[4] == scores[3]);  // 2 threads against 1, batch 2
  for (std::size_t k : {3, 4})    // another batch size: the same to rounding
    for (std::size_t i = 0; i < 3; ++i) CHECK(scores[k][i] == Approx(scores[0][i]).epsilon(1e-5));
  CHECK(scores[0][0] > 0);
}

TEST_CASE("anomaly example: a grid of input / reconstruction / map rows; 28x28 inputs only", "[examples][anomaly]") {
  const auto x = bars(2);
  ddpm::AnomalyResult<float> r;
  r.reconstruction = ddpm::Tensor<float>::copy_of(x.cview());
  r.maps = ddpm::Tensor<float>({2, 1, 28, 28});
  r.maps[5] = 0.5f;
  r.maps[784 + 7] = 2.0f;  // the largest: white
  const auto g = mnist::maps_grid({{x.cview(), &r}}, 2);
  REQUIRE(g.shape() == ddpm::Shape{6, 1, 28, 28});
  CHECK(g[0] == x[0]);
  CHECK(g[2 * 784 + 300] == x[300]);
  CHECK(g[4 * 784 + 5] == Approx(-0.5));
  CHECK(g[5 * 784 + 7] == 1.0f);
  CHECK(g[4 * 784 + 6] == -1.0f);

  const fs::path dir = fs::path(DDPM_TEST_TMP_DIR) / "anomaly_example";
  fs::create_directories(dir);
  ddpm::Tensor<float> small({2, 1, 3, 3});
  ddpm::io::write_idx_images(dir / "small.idx", small.cview());
  CHECK(message_of([&] { mnist::load_images_28(dir / "small.idx", "--input"); }) ==
        "--input: expected 28x28 images, got 3x3 (" + (dir / "small.idx").string() + ")");
  mnist::write_scores(dir / "scores.txt", {0.25, 1e-3});
  std::ifstream in(dir / "scores.txt");
  double a = 0, b = 0;
  in >> a >> b;
  CHECK(a == 0.25);
  CHECK(b == 1e-3);
}
