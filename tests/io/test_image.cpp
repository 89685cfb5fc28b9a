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

// Channel conversion is ours (stb_image is asked for the file's own channels):
// gray <-> RGB, alpha dropped, luma as stb_image computes it.
TEST_CASE("images load in 1 or 3 channels from gray, gray+alpha, RGB and RGBA", "[image]") {
  const fs::path dir = fs::path(DDPM_TEST_TMP_DIR);
  // Two pixels per image: (10, 200, 40) and (255, 0, 128); alpha 77.
  const std::uint8_t r[2] = {10, 255}, g[2] = {200, 0}, b[2] = {40, 128};
  const auto luma = [](int R, int G, int B) { return static_cast<std::uint8_t>((R * 77 + G * 150 + B * 29) >> 8); };
  for (int c : {1, 2, 3, 4}) {
    io::Image img{2, 1, c, {}};
    for (int i = 0; i < 2; ++i) {
      if (c <= 2) img.pixels.push_back(r[i]);
      else img.pixels.insert(img.pixels.end(), {r[i], g[i], b[i]});
      if (c == 2 || c == 4) img.pixels.push_back(77);
    }
    const fs::path p = dir / ("channels" + std::to_string(c) + ".png");
    io::write_png(p, c == 2 ? io::Image{2, 1, 1, {r[0], r[1]}} : img);  // stb writes no gray+alpha PNG
    if (c == 2) continue;
    const auto gray = io::load_image(p, 1), rgb = io::load_image(p, 3);
    for (int i = 0; i < 2; ++i) {
      const std::uint8_t y = c == 1 ? r[i] : luma(r[i], g[i], b[i]);
      CHECK(gray.pixels[i] == y);
      for (int k = 0; k < 3; ++k) CHECK(rgb.pixels[i * 3 + k] == (c == 1 ? r[i] : (k == 0 ? r[i] : k == 1 ? g[i] : b[i])));
    }
  }
  // 16-bit PGM: stb_image 2.27 would read the big-endian samples in the
  // machine's byte order (0x1000 as 0x0010), so they are refused by name.
  const fs::path pgm = dir / "sixteen.pgm";
  std::ofstream(pgm, std::ios::binary) << std::string("P5\n2 1\n65535\n\x10\x00\xff\x00", 18);
  CHECK_THROWS_WITH(io::load_image(pgm, 1), Catch::Contains("sixteen.pgm") && Catch::Contains("16-bit PNM (maximum value 65535)"));
}
