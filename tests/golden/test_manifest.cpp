// The golden folder itself: present, non-empty, every kind understood, every
// file it lists present with the stated size and SHA-256 (so a copy of the
// data, such as the vendored tests/data/golden, is byte for byte the one
// diffusers' numbers were written to).
#include "support/golden.hpp"

#include <array>
#include <cstdint>
#include <fstream>
#include <iomanip>
#include <iterator>
#include <vector>

using namespace ddpm::test;

namespace {

// SHA-256 (FIPS 180-4) of a whole file, as lowercase hex.
std::string sha256_hex(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<unsigned char> msg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  static constexpr std::array<std::uint32_t, 64> k{
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
  std::array<std::uint32_t, 8> h{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const std::uint64_t bits = static_cast<std::uint64_t>(msg.size()) * 8;
  msg.push_back(0x80);
  while (msg.size() % 64 != 56) msg.push_back(0);
  for (int i = 7; i >= 0; --i) msg.push_back(static_cast<unsigned char>(bits >> (8 * i)));
  const auto rotr = [](std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  for (std::size_t off = 0; off < msg.size(); off += 64) {
    std::array<std::uint32_t, 64> w{};
    for (int i = 0; i < 16; ++i)
      w[i] = std::uint32_t{msg[off + 4 * i]} << 24 | std::uint32_t{msg[off + 4 * i + 1]} << 16 |
             std::uint32_t{msg[off + 4 * i + 2]} << 8 | std::uint32_t{msg[off + 4 * i + 3]};
    for (int i = 16; i < 64; ++i) {
      const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    auto [a, b, c, d, e, f, g, hh] = h;
    for (int i = 0; i < 64; ++i) {
      const std::uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    const std::array<std::uint32_t, 8> add{a, b, c, d, e, f, g, hh};
    for (int i = 0; i < 8; ++i) h[i] += add[i];
  }
  std::ostringstream os;
  for (std::uint32_t v : h) os << std::hex << std::setw(8) << std::setfill('0') << v;
  return os.str();
}

}  // namespace

TEST_CASE("sha256_hex: FIPS 180-4 test vectors", "[golden]") {
  const fs::path p = fs::path(DDPM_TEST_TMP_DIR) / "sha256_vector.txt";
  const auto write = [&](const std::string& s) { std::ofstream(p, std::ios::binary) << s; };
  write("");
  CHECK(sha256_hex(p) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  write("abc");
  CHECK(sha256_hex(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  write("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq");  // two blocks
  CHECK(sha256_hex(p) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST_CASE("golden manifest lists only kinds the harness understands", "[golden]") {
  const json m = manifest();
  for (auto& [kind, file] : m["kinds"].items()) {
    INFO("kind " << kind);
    CHECK(known_golden_kinds().count(kind) == 1);
    CHECK(fs::exists(golden_dir() / file.get<std::string>()));
  }
}

TEST_CASE("golden manifest files exist with their stated sizes and SHA-256", "[golden]") {
  const json m = manifest();
  REQUIRE(m.contains("files"));
  REQUIRE(!m["files"].empty());
  int verified = 0;
  for (auto& f : m["files"]) {
    const auto p = golden_dir() / f.at("path").get<std::string>();
    if (p.extension() == ".md") continue;  // prose may be edited after the data was made
    INFO(p);
    REQUIRE(fs::exists(p));
    CHECK(fs::file_size(p) == f.at("bytes").get<std::uintmax_t>());
    if (f.contains("sha256")) {
      CHECK(sha256_hex(p) == f["sha256"].get<std::string>());
      ++verified;
    }
  }
  std::printf("golden manifest: %d files verified by size and SHA-256\n", verified);
}
