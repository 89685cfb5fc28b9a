// IDX (MNIST) files: round trips, gzip, and every malformed header.
#include <catch2/catch.hpp>

#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "ddpm/io/idx.hpp"

using namespace ddpm;
namespace fs = std::filesystem;

namespace {
fs::path tmp(const std::string& name) { return fs::path(DDPM_TEST_TMP_DIR) / name; }
void write_raw(const fs::path& p, const std::vector<std::uint8_t>& bytes) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                           static_cast<std::streamsize>(bytes.size()));
}
void expect_error(const std::vector<std::uint8_t>& bytes, const std::string& needle) {
  const auto p = tmp("bad.idx");
  write_raw(p, bytes);
  try {
    io::read_idx(p);
    FAIL("no error; expected '" << needle << "'");
  } catch (const Error& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find("bad.idx") != std::string::npos);
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
}
}  // namespace

TEST_CASE("IDX round trip, plain and gzip-compressed", "[idx]") {
  std::vector<std::uint8_t> data(2 * 3 * 4);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 10);
  io::write_idx(tmp("a.idx"), {2, 3, 4}, data);
  auto a = io::read_idx(tmp("a.idx"));
  CHECK(a.dims == std::vector<index_t>{2, 3, 4});
  CHECK(a.data == data);
  // The same bytes gzip-compressed.
  const auto raw = io::read_file(tmp("a.idx"));
  gzFile gz = gzopen(tmp("a.idx.gz").string().c_str(), "wb");
  gzwrite(gz, raw.data(), static_cast<unsigned>(raw.size()));
  gzclose(gz);
  auto b = io::read_idx(tmp("a.idx.gz"));
  CHECK(b.data == data);
  // As images in [-1, 1].
  auto img = io::load_idx_images<float>(tmp("a.idx"));
  CHECK(img.shape() == Shape{2, 1, 3, 4});
  CHECK(img[0] == -1.0f);
  CHECK(img[1] == Approx(10 / 127.5 - 1));
  io::write_idx_images<float>(tmp("b.idx"), img);
  CHECK(io::read_idx(tmp("b.idx")).data == data);
}

TEST_CASE("IDX labels are range-checked", "[idx]") {
  io::write_idx(tmp("l.idx"), {3}, {1, 9, 4});
  CHECK(io::load_idx_labels(tmp("l.idx")) == std::vector<std::int64_t>{1, 9, 4});
  CHECK_THROWS_WITH(io::load_idx_labels(tmp("l.idx"), 5), Catch::Contains("label 9 at index 1"));
  io::write_idx(tmp("i.idx"), {1, 1, 1}, {0});
  CHECK_THROWS_WITH(io::load_idx_labels(tmp("i.idx")), Catch::Contains("IDX1"));
  CHECK_THROWS_WITH(io::load_idx_images<float>(tmp("l.idx")), Catch::Contains("IDX3"));
}

TEST_CASE("malformed IDX files are refused with a clear error", "[idx][errors]") {
  expect_error({0, 0}, "too short");
  expect_error({1, 0, 8, 1, 0, 0, 0, 1, 5}, "magic");
  expect_error({0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0}, "element type 0xd");
  expect_error({0, 0, 8, 0}, "rank 0");
  expect_error({0, 0, 8, 9}, "rank 9");
  expect_error({0, 0, 8, 2, 0, 0}, "truncated IDX header");
  expect_error({0, 0, 8, 1, 0, 0, 0, 5, 1, 2}, "truncated: header promises 5 bytes");
  expect_error({0, 0, 8, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, "more than");
  expect_error({0, 0, 8, 1, 0, 0, 0, 1, 7, 7}, "trailing bytes");
  CHECK_THROWS_WITH(io::read_idx(tmp("does-not-exist.idx")), Catch::Contains("not found"));
  CHECK_THROWS_AS(io::write_idx(tmp("w.idx"), {2, 2}, {1, 2, 3}), Error);
}
