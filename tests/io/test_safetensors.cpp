// safetensors: round trips, conversions, the golden files, and every way a
// header can lie (each must be a ddpm::Error naming the file and the field).
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>

#include "ddpm/io/safetensors.hpp"

using namespace ddpm;
using io::SafeTensors;
namespace fs = std::filesystem;

namespace {
std::vector<char> with_header(const std::string& header, std::size_t data_bytes) {
  std::vector<char> b(8 + header.size() + data_bytes, 0);
  const std::uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  std::memcpy(b.data() + 8, header.data(), header.size());
  return b;
}
void expect_error(const std::vector<char>& bytes, const std::string& needle) {
  try {
    SafeTensors::from_bytes(bytes, "bad.safetensors");
    FAIL("no error; expected one mentioning '" << needle << "'");
  } catch (const Error& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find("bad.safetensors") != std::string::npos);
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
}
}  // namespace

TEST_CASE("safetensors write/read round trip keeps values, shapes and metadata", "[safetensors]") {
  Tensor<float> a({2, 3});
  Tensor<double> b({4});
  for (index_t i = 0; i < 6; ++i) a[i] = 0.5f * static_cast<float>(i) - 1;
  for (index_t i = 0; i < 4; ++i) b[i] = 1.0 / (1.0 + static_cast<double>(i));
  io::SafeTensorsWriter w;
  w.add("z.weight", a);
  w.add("a.bias", b);
  w.add_int64("labels", {3, -1, 7});
  w.set_metadata("format", "pt");
  const fs::path p = fs::path(DDPM_TEST_TMP_DIR) / "roundtrip.safetensors";
  w.save(p);
  auto st = SafeTensors::load(p);
  CHECK(st.metadata().at("format") == "pt");
  CHECK(st.info("z.weight").dtype == io::DType::F32);
  CHECK(st.info("a.bias").dtype == io::DType::F64);
  auto a2 = st.get<float>("z.weight");
  CHECK(a2.shape() == a.shape());
  for (index_t i = 0; i < 6; ++i) CHECK(a2[i] == a[i]);
  auto b2 = st.get<double>("a.bias");
  for (index_t i = 0; i < 4; ++i) CHECK(b2[i] == b[i]);
  CHECK(st.get_int64("labels") == std::vector<std::int64_t>{3, -1, 7});
  CHECK_THROWS_AS(st.get_int64("a.bias"), Error);
  CHECK_THROWS_AS(st.get<float>("missing"), Error);
  // Header padded to 8 bytes, tensors in name order (as the Python writer does).
  auto bytes = w.bytes();
  std::uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  CHECK(st.info("a.bias").begin == 0);
}

TEST_CASE("F16 and BF16 are widened exactly", "[safetensors]") {
  // 1.0, -2.0, 65504 (max half), 2^-24 (smallest subnormal half), inf
  const std::uint16_t h[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00};
  const std::uint16_t bf[] = {0x3F80, 0xC040};  // 1.0, -3.0
  std::string header = R"({"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]},)"
                       R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[10,14]}})";
  auto bytes = with_header(header, 14);
  std::memcpy(bytes.data() + 8 + header.size(), h, 10);
  std::memcpy(bytes.data() + 8 + header.size() + 10, bf, 4);
  auto st = SafeTensors::from_bytes(bytes);
  auto x = st.get<float>("h");
  CHECK(x[0] == 1.0f);
  CHECK(x[1] == -2.0f);
  CHECK(x[2] == 65504.0f);
  CHECK(x[3] == std::ldexp(1.0f, -24));
  CHECK(std::isinf(x[4]));
  auto y = st.get<double>("b");
  CHECK(y[0] == 1.0);
  CHECK(y[1] == -3.0);
}

TEST_CASE("malformed safetensors files are refused with a clear error", "[safetensors][errors]") {
  expect_error({1, 2, 3}, "at least the 8-byte header length");
  {
    std::vector<char> b(16, 0);
    const std::uint64_t n = std::uint64_t{1} << 40;  // claims a terabyte
    std::memcpy(b.data(), &n, 8);
    expect_error(b, "exceeds");
  }
  {
    std::vector<char> b(16, ' ');
    const std::uint64_t n = 100;
    std::memcpy(b.data(), &n, 8);
    expect_error(b, "truncated");
  }
  expect_error(with_header("{not json", 0), "not valid JSON");
  expect_error(with_header("[1,2]", 0), "JSON object");
  expect_error(with_header(R"({"x":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}})", 1), "unsupported dtype");
  expect_error(with_header(R"({"x":{"shape":[1],"data_offsets":[0,4]}})", 4), "'dtype'");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 8), "need 8");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 4), "outside");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "non-negative");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4), "outside");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,4]}})", 4),
               "too large");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
               "overlap");
  expect_error(with_header(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
               "appears twice");
  expect_error(with_header(R"({"__metadata__":{"a":1}})", 0), "must be a string");
  CHECK_THROWS_WITH(SafeTensors::load("/nonexistent/x.safetensors"), Catch::Contains("not found"));
}

TEST_CASE("a failed save leaves the previous file intact", "[safetensors][atomic]") {
  const fs::path p = fs::path(DDPM_TEST_TMP_DIR) / "atomic.safetensors";
  io::SafeTensorsWriter w1;
  w1.add("x", Tensor<float>({3}, 1.0f));
  w1.save(p);
  io::SafeTensorsWriter w2;
  w2.add("x", Tensor<float>({1 << 20}, 2.0f));  // 4 MiB: several chunks
  std::size_t written = 0;
  io::write_fault_hook() = [&](std::size_t n) {
    written += n;
    if (written > (1u << 20)) throw Error("simulated disk failure");
  };
  CHECK_THROWS_WITH(w2.save(p), Catch::Contains("simulated disk failure"));
  io::write_fault_hook() = nullptr;
  auto st = SafeTensors::load(p);
  CHECK(st.get<float>("x").numel() == 3);
  CHECK(st.get<float>("x")[0] == 1.0f);
  for (auto& e : fs::directory_iterator(p.parent_path()))  // no temporary left behind
    CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
}
