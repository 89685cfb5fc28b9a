// PNG writing and reading through stb, and grid tiling.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "ddpm/io/image.hpp"

using namespace ddpm;
namespace fs = std::filesystem;

TEST_CASE("PNG round trip and grid layout", "[image]") {
  Tensor<float> imgs({3, 1, 2, 2});
  for (index_t i = 0; i < imgs.numel(); ++i) imgs[i] = -1.0f + 2.0f * static_cast<float>(i) / 11.0f;
  const auto grid = io::make_grid<float>(imgs, 2, 1, 7);
  CHECK(grid.width == 1 + 2 * 3);
  CHECK(grid.height == 1 + 2 * 3);
  CHECK(grid.pixels[0] == 7);                       // padding
  CHECK(grid.pixels[1 * grid.width + 1] == 0);      // first pixel of image 0 (-1)
  CHECK(grid.pixels[5 * grid.width + 2] == io::to_byte(imgs[11]));  // image 2 starts row 2 of the grid
  const fs::path p = fs::path(DDPM_TEST_TMP_DIR) / "grid.png";
  io::write_png(p, grid);
  const auto back = io::load_image(p, 1);
  CHECK(back.width == grid.width);
  CHECK(back.height == grid.height);
  CHECK(back.pixels == grid.pixels);
}

TEST_CASE("bad images give clear errors", "[image][errors]") {
  const fs::path p = fs::path(DDPM_TEST_TMP_DIR) / "not-an-image.png";
  std::ofstream(p) << "hello";
  CHECK_THROWS_WITH(io::load_image(p), Catch::Contains("not-an-image.png") && Catch::Contains("stb_image"));
  CHECK_THROWS_WITH(io::load_image(fs::path(DDPM_TEST_TMP_DIR) / "missing.png"), Catch::Contains("not found"));
  CHECK_THROWS_AS(io::write_png(p, io::Image{2, 2, 1, {1, 2, 3}}), Error);
  CHECK_THROWS_AS(io::load_image(p, 2), Error);
}
