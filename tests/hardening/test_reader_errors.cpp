// Bad input to every reader, beyond what tests/io and tests/models already
// cover: each is a ddpm::Error whose message is one line naming the file,
// the field and what was expected; none crashes, hangs or allocates what the
// file does not hold. Inputs found by the fuzzers (tests/fuzz) are here as
// regression tests.
#include <catch2/catch.hpp>

#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ddpm/io/idx.hpp"
#include "ddpm/io/image.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/io/unet_config_json.hpp"
#include "support/show_error.hpp"

using namespace ddpm;
namespace fs = std::filesystem;

namespace {

fs::path dir() {
  const auto d = fs::path(DDPM_TEST_TMP_DIR) / "hardening";
  fs::create_directories(d);
  return d;
}

void write_raw(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

using test::error_of;

std::string with_header(const std::string& header, std::size_t data_bytes) {
  std::string b(8 + header.size() + data_bytes, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  std::memcpy(b.data() + 8, header.data(), header.size());
  return b;
}

void safetensors_error(const std::string& bytes, std::initializer_list<std::string> fragments) {
  error_of([&] { io::SafeTensors::from_bytes({bytes.begin(), bytes.end()}, "bad.safetensors"); }, fragments);
}

std::string nested(const std::string& open, const std::string& leaf, const std::string& close, int depth) {
  std::string s;
  s.reserve((open.size() + close.size()) * static_cast<std::size_t>(depth) + leaf.size());
  for (int i = 0; i < depth; ++i) s += open;
  s += leaf;
  for (int i = 0; i < depth; ++i) s += close;
  return s;
}

// A minimal PNG (valid CRCs) with the given header and a small IDAT.
std::string png_header(std::uint32_t w, std::uint32_t h, int depth, int color_type) {
  auto be32 = [](std::uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                       static_cast<char>(v)};
  };
  auto chunk = [&](const std::string& type, const std::string& data) {
    const std::string td = type + data;
    const auto crc = crc32(0, reinterpret_cast<const Bytef*>(td.data()), static_cast<uInt>(td.size()));
    return be32(static_cast<std::uint32_t>(data.size())) + td + be32(static_cast<std::uint32_t>(crc));
  };
  std::string ihdr = be32(w) + be32(h);
  ihdr += {static_cast<char>(depth), static_cast<char>(color_type), 0, 0, 0};
  std::string raw(64, '\0');
  std::vector<Bytef> z(compressBound(raw.size()));
  uLongf zn = z.size();
  compress(z.data(), &zn, reinterpret_cast<const Bytef*>(raw.data()), raw.size());
  return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) +
         chunk("IDAT", std::string(reinterpret_cast<const char*>(z.data()), zn)) + chunk("IEND", "");
}

}  // namespace

TEST_CASE("safetensors: malformed entries name the tensor and the field", "[hardening][safetensors]") {
  safetensors_error(with_header(R"({"x":[1,2]})", 0), {"bad.safetensors", "tensor 'x'", "must be an object"});
  safetensors_error(with_header(R"({"x":{"dtype":5,"shape":[1],"data_offsets":[0,4]}})", 4),
                    {"tensor 'x'", "'dtype' missing or not a string"});
  safetensors_error(with_header(R"({"x":{"dtype":"F32","data_offsets":[0,4]}})", 4),
                    {"tensor 'x'", "'shape' missing or not an array"});
  safetensors_error(with_header(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 8),
                    {"tensor 'x'", "'data_offsets' must be an array [begin, end]"});
  safetensors_error(with_header(R"({"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4),
                    {"tensor 'x'", "shape entries must be non-negative integers"});
  safetensors_error(with_header(R"({"x":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}})", 4),
                    {"tensor 'x'", "shape entries must be non-negative integers"});
  safetensors_error(with_header(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4),
                    {"tensor 'x'", "data_offsets must be non-negative integers"});
  safetensors_error(with_header(R"({"x":{"dtype":"F32","shape":[1,1,1,1,1,1,1],"data_offsets":[0,4]}})", 4),
                    {"tensor 'x'", "rank 7 above the supported 6"});
  // dtype and shape disagree with the byte range (F64 needs 8 bytes per value).
  safetensors_error(with_header(R"({"x":{"dtype":"F64","shape":[1],"data_offsets":[0,4]}})", 4),
                    {"tensor 'x'", "span 4 bytes but shape and dtype need 8"});
  // Offsets past 2^64 / huge shapes that overflow the byte count.
  safetensors_error(with_header(R"({"x":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})", 0),
                    {"tensor 'x'", "shape and dtype need 2305843009213693952 x 8 bytes, more than 2^62"});
  safetensors_error(with_header(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}})", 4),
                    {"tensor 'x'", "outside the 4-byte data section"});
  safetensors_error(with_header(R"({"__metadata__":["format","pt"]})", 0),
                    {"__metadata__ must be an object of strings"});
  // A tensor inside another one's bytes (not just an overlapping tail).
  safetensors_error(with_header(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 16),
                    {"two tensors overlap"});
  // Three copies of one name.
  safetensors_error(with_header(R"({"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                R"("x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},)"
                                R"("x":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}})", 3),
                    {"tensor name 'x' appears twice"});
  // A header of nothing but nesting (found by thinking about fuzz_unet_config):
  // parsed and rejected without recursion.
  safetensors_error(with_header(nested("[", "", "]", 200000), 0), {"header must be a JSON object"});
  safetensors_error(with_header("{\"x\":" + nested("{\"a\":", "1", "}", 200000) + "}", 0),
                    {"tensor 'x'", "'dtype' missing"});
  safetensors_error(with_header("{\"x\":{}}   \x01", 0), {"not valid JSON"});
  safetensors_error(with_header("", 0), {"not valid JSON"});
}

TEST_CASE("safetensors: accessors refuse what the file does not hold", "[hardening][safetensors]") {
  io::SafeTensorsWriter w;
  w.add("f", Tensor<float>({2}, 1.0f));
  const auto st = io::SafeTensors::from_bytes(w.bytes(), "ok.safetensors");
  error_of([&] { (void)st.get_int64("f"); }, {"ok.safetensors", "tensor 'f'", "expected an integer dtype, got F32"});
  error_of([&] { (void)st.get<float>("g"); }, {"ok.safetensors", "no tensor named 'g'"});
}

TEST_CASE("safetensors files cut short or not files at all", "[hardening][safetensors]") {
  io::SafeTensorsWriter w;
  w.add("x", Tensor<float>({64}, 0.5f));
  const auto full = w.bytes();
  const auto p = dir() / "cut.safetensors";
  // Cut in the data section, in the header, and in the length prefix.
  for (std::size_t keep : {full.size() - 1, full.size() / 2, std::size_t{20}, std::size_t{5}, std::size_t{0}}) {
    write_raw(p, std::string(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(keep)));
    INFO("kept " << keep << " of " << full.size() << " bytes");
    const std::string msg = error_of([&] { io::SafeTensors::load(p); }, {"cut.safetensors"});
    CHECK((msg.find("truncated") != std::string::npos || msg.find("outside") != std::string::npos ||
           msg.find("at least the 8-byte header length") != std::string::npos));
  }
  error_of([&] { io::SafeTensors::load(dir()); }, {"hardening", "not a regular file"});
}

TEST_CASE("IDX: gzip damage and folders are refused", "[hardening][idx]") {
  std::vector<std::uint8_t> data(4 * 5 * 5, 7);
  io::write_idx(dir() / "ok.idx", {4, 5, 5}, data);
  const auto raw = io::read_file(dir() / "ok.idx");
  // A gzip file cut in the middle of its deflate stream.
  const auto gz_path = dir() / "cut.idx.gz";
  {
    gzFile gz = gzopen(gz_path.string().c_str(), "wb");
    gzwrite(gz, raw.data(), static_cast<unsigned>(raw.size()));
    gzclose(gz);
  }
  const auto gz = io::read_file(gz_path);
  write_raw(gz_path, std::string(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() / 2)));
  error_of([&] { io::read_idx(gz_path); }, {"cut.idx.gz", "truncated"});
  // A gzip magic followed by garbage.
  write_raw(dir() / "garbage.idx.gz", std::string("\x1f\x8b\x08\x00garbage-garbage-garbage", 28));
  error_of([&] { io::read_idx(dir() / "garbage.idx.gz"); }, {"garbage.idx.gz"});
  error_of([&] { io::read_idx(dir()); }, {"hardening", "not a regular file"});
  // An empty file.
  write_raw(dir() / "empty.idx", "");
  error_of([&] { io::read_idx(dir() / "empty.idx"); }, {"empty.idx", "too short for an IDX header"});
  // A header that claims 4 billion images of 1x1 in a 20-byte file: refused
  // after reading what is there, never allocated up front.
  write_raw(dir() / "liar.idx", std::string("\0\0\x08\x03\xff\xff\xff\xff\0\0\0\x01\0\0\0\x01xxxx", 20));
  error_of([&] { io::read_idx(dir() / "liar.idx"); }, {"liar.idx", "truncated: header promises 4294967295 bytes"});
  // Labels: out of range for the class count, and a negative class count.
  io::write_idx(dir() / "labels.idx", {3}, {0, 10, 2});
  error_of([&] { io::load_idx_labels(dir() / "labels.idx", 10); },
           {"labels.idx", "label 10 at index 1 is outside [0, 10)"});
}

TEST_CASE("images: headers that lie about the size are refused before decoding", "[hardening][image]") {
  // Regression (fuzz_image): a 16-bit RGBA PNG header claiming 16384 x 16384
  // in a ~100-byte file made stb_image request ~2^64 bytes (ASan abort;
  // a multi-gigabyte allocation attempt without it).
  write_raw(dir() / "huge16.png", png_header(16384, 16384, 16, 6));
  error_of([&] { io::load_image(dir() / "huge16.png", 3); },
           {"huge16.png", "image is 16384x16384", "pixels, more than the 67108864 allowed"});
  write_raw(dir() / "wide.png", png_header(20000, 1, 8, 0));
  error_of([&] { io::load_image(dir() / "wide.png", 1); },
           {"wide.png", "image is 20000x1, expected sides in [1, 16384]"});
  // Regression (fuzz_image): headers claiming far more pixels than the file
  // holds. stb_image's HDR reader decoded 8192 x 8192 pixels of garbage from
  // this 51-byte file (minutes and 1.3 GB under ASan); PNM took 28 s.
  write_raw(dir() / "liar.hdr", "#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 8192 +X 8192\n");
  error_of([&] { io::load_image(dir() / "liar.hdr", 3); },
           {"liar.hdr", "image header claims 8192x8192 pixels, more than a file of 51 bytes can hold"});
  write_raw(dir() / "liar.ppm", "P6\n4096 4096\n255\n");
  error_of([&] { io::load_image(dir() / "liar.ppm", 3); }, {"liar.ppm", "image header claims 4096x4096 pixels"});
  static const char gif[] = "GIF89a\x00\x20\x00\x20\x80\x00\x00\xff\xff\xff\x00\x00\x00,\x00\x00\x00"
                            "\x00\x00\x20\x00\x20\x00\x02\x02\x44\x01\x00;";
  write_raw(dir() / "liar.gif", std::string(gif, sizeof gif - 1));
  error_of([&] { io::load_image(dir() / "liar.gif", 1); }, {"liar.gif", "image header claims 8192x8192 pixels"});
  // A real, highly compressible picture is not mistaken for a liar.
  {
    io::Image black{1024, 1024, 1, std::vector<std::uint8_t>(1024 * 1024, 0)};
    io::write_png(dir() / "black.png", black);
    const auto back = io::load_image(dir() / "black.png", 1);
    CHECK(back.width == 1024);
    CHECK(back.pixels == black.pixels);
  }
  // Regression (fuzz_image): a JPEG whose Huffman table declares more than 256
  // symbols made Debian's stb_image 2.27 write past an array (UBSan: index 257
  // out of bounds in stbi__build_huffman). The corpus files start with the
  // fuzz target's channel byte.
  const fs::path corpus = fs::path(DDPM_SOURCE_DIR) / "tests" / "fuzz" / "corpus" / "image";
  const auto without_channel_byte = [&](const char* name) {
    const auto b = io::read_file(corpus / name);
    const auto out = dir() / name;
    write_raw(out, std::string(b.begin() + 1, b.end()));
    return out;
  };
  error_of([&] { io::load_image(without_channel_byte("regress_jpeg_dht_overflow.jpg"), 3); },
           {"regress_jpeg_dht_overflow.jpg", "corrupt JPEG: a Huffman table (DHT) declares", "expected at most 256"});
  // Regression (fuzz_image): the same overflow from a table cut short by the
  // end of the file (stb_image reads the missing count bytes as 0).
  error_of([&] { io::load_image(without_channel_byte("regress_jpeg_dht_truncated.jpg"), 3); },
           {"regress_jpeg_dht_truncated.jpg", "corrupt JPEG: a Huffman table (DHT) declares", "expected at most 256"});
  // Regression (fuzz_image): ... and from a file whose SOI marker is preceded
  // by 0xFF fill bytes, which stb_image skips.
  error_of([&] { io::load_image(without_channel_byte("regress_jpeg_fill_bytes.jpg"), 3); },
           {"regress_jpeg_fill_bytes.jpg", "corrupt JPEG: a Huffman table (DHT) declares", "expected at most 256"});
  // Regression (fuzz_image): a 16-bit PGM read as 3 channels made stb_image
  // 2.27 convert 16-bit samples with its 8-bit code and read past the buffer.
  error_of([&] { io::load_image(without_channel_byte("regress_pnm16_convert.pgm"), 3); },
           {"regress_pnm16_convert.pgm", "16-bit PNM (maximum value 58191) is not supported"});
  // Regression (fuzz_image, CI smoke run): a scan using a Huffman table no DHT
  // defined made stb_image 2.27 decode with an uninitialised table.
  error_of([&] { io::load_image(without_channel_byte("regress_jpeg_undefined_table.jpg"), 3); },
           {"regress_jpeg_undefined_table.jpg", "a scan uses a Huffman table that no DHT segment defines"});
  // Regression (fuzz_image, CI smoke run): entropy-coded data that runs out
  // mid-code makes stb_image 2.27 shift its bit buffer by 32 or more (UBSan:
  // shift exponent 33; fixed in 2.28). Only the decoded bits depend on it
  // (see tests/fuzz/fuzz_image.cpp): the file decodes, as any truncated JPEG
  // does in stb_image, to the 8 x 100 picture its frame header declares.
  {
    const auto img = io::load_image(without_channel_byte("regress_jpeg_code_bits.jpg"), 3);
    CHECK(img.width == 8);
    CHECK(img.height == 100);
    CHECK(img.pixels.size() == std::size_t{8 * 100 * 3});
  }
  // Regression (fuzz_image): corrupt DC differences summed over many blocks,
  // times a 16-bit quantisation value, overflow int in stb_image 2.27 (UBSan:
  // signed integer overflow; 2.28 refuses them). Only coefficient values are
  // affected (see tests/fuzz/fuzz_image.cpp): the file decodes to the 8 x 12040
  // picture its frame header declares.
  {
    const auto img = io::load_image(without_channel_byte("regress_jpeg_dequant_overflow.jpg"), 1);
    CHECK(img.width == 8);
    CHECK(img.height == 12040);
    CHECK(img.pixels.size() == std::size_t{8 * 12040});
  }
  // Real JPEGs (baseline, in the corpus) still load.
  CHECK(io::load_image(without_channel_byte("rgb.jpg"), 3).width > 0);
  CHECK(io::load_image(without_channel_byte("gray.jpg"), 1).width > 0);
  // Regression (fuzz_image): PNM header numbers that overflow stb_image's int.
  write_raw(dir() / "overflow.ppm", "P6\n8192191819219192\n255\n");
  error_of([&] { io::load_image(dir() / "overflow.ppm", 3); }, {"overflow.ppm", "corrupt PNM header"});
  static const char pgm[] = "P5\n# a comment\n2 1\n255\n\x10\x20";
  write_raw(dir() / "comment.pgm", std::string(pgm, sizeof pgm - 1));
  CHECK(io::load_image(dir() / "comment.pgm", 1).pixels == std::vector<std::uint8_t>{0x10, 0x20});
  // Regression (fuzz_image): a 74-byte PNG whose IDAT claims 687865872 bytes
  // made stb_image allocate them before reading.
  error_of([&] { io::load_image(without_channel_byte("regress_png_chunk_length.png"), 1); },
           {"regress_png_chunk_length.png", "corrupt PNG: a chunk claims more bytes than the file holds"});
  // Regression (fuzz_image, CI smoke run): an empty IDAT chunk before any
  // image data made stb_image 2.27 memcpy zero bytes to a null buffer (UBSan:
  // null pointer passed as argument 1). Empty IDAT chunks are dropped before
  // decoding; this file has no other IDAT and ends inside a chunk, so it is
  // still refused.
  error_of([&] { io::load_image(without_channel_byte("regress_png_empty_idat.png"), 1); },
           {"regress_png_empty_idat.png", "not an image stb_image can read"});
  // A valid PNG with empty IDAT chunks before and between its data decodes to
  // the same pixels as without them.
  {
    io::Image small{5, 3, 3, std::vector<std::uint8_t>(5 * 3 * 3)};
    for (std::size_t i = 0; i < small.pixels.size(); ++i) small.pixels[i] = static_cast<std::uint8_t>(i * 53 + 7);
    io::write_png(dir() / "plain.png", small);
    const auto plain = io::read_file(dir() / "plain.png");
    const std::string text(plain.begin(), plain.end());
    const std::string empty_idat("\0\0\0\0IDAT\x35\xaf\x06\x1e", 12);  // length 0, type, CRC-32 of "IDAT"
    const std::size_t idat = text.find("IDAT") - 4;
    write_raw(dir() / "empty_idat.png", text.substr(0, idat) + empty_idat + empty_idat + text.substr(idat));
    const auto img = io::load_image(dir() / "empty_idat.png", 3);
    CHECK(img.width == 5);
    CHECK(img.height == 3);
    CHECK(img.pixels == small.pixels);
  }
  // Real JPEGs pass the check.
  CHECK(io::load_image(without_channel_byte("rgb.jpg"), 3).width == 8);
  CHECK(io::load_image(without_channel_byte("gray.jpg"), 1).height == 8);
  // A small image whose pixel data is missing.
  write_raw(dir() / "short.png", png_header(64, 64, 8, 2));
  error_of([&] { io::load_image(dir() / "short.png", 3); }, {"short.png", "cannot decode image"});
  // A real PNG cut short.
  io::Image img{8, 8, 3, std::vector<std::uint8_t>(8 * 8 * 3, 100)};
  for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<std::uint8_t>(i * 37);
  io::write_png(dir() / "ok.png", img);
  const auto bytes = io::read_file(dir() / "ok.png");
  write_raw(dir() / "cut.png", std::string(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() - 20)));
  error_of([&] { io::load_image(dir() / "cut.png", 3); }, {"cut.png"});
  // Wrong magic (a text file) and an empty file.
  write_raw(dir() / "empty.png", "");
  error_of([&] { io::load_image(dir() / "empty.png"); }, {"empty.png", "not an image stb_image can read"});
  error_of([&] { io::load_image(dir() / "ok.png", 4); }, {"channels must be 1 or 3, got 4"});
  // A folder.
  error_of([&] { io::load_image(dir()); }, {"hardening", "not a regular file"});
}

TEST_CASE("config.json: deep nesting, wrong types and unknown block types", "[hardening][config]") {
  const auto p = dir() / "config.json";
  auto config_error = [&](const std::string& text, std::initializer_list<std::string> fragments) {
    write_raw(p, text);
    return error_of([&] { io::read_unet2d_config(p); }, fragments);
  };
  // Regression (fuzz_unet_config): a value nested 200000 deep overflowed the
  // stack while the error message was formatted (json::dump recurses).
  config_error("{\"sample_size\": " + nested("[", "", "]", 200000) + "}",
               {"config.json", "key \"sample_size\"", "nested too deep", "expected a list of integers"});
  config_error("{\"in_channels\": " + nested("{\"a\":", "1", "}", 200000) + "}",
               {"config.json", "key \"in_channels\"", "nested too deep", "expected an integer"});
  config_error(nested("[", "", "]", 200000), {"config.json", "must be a JSON object"});
  // A value nested a little is still shown.
  config_error(R"({"in_channels": [[1]]})", {"key \"in_channels\" = [[1]]: expected an integer"});
  // Syntax errors, truncation, empty files.
  config_error(R"({"in_channels": 3,)", {"config.json", "invalid JSON"});
  config_error("", {"config.json", "invalid JSON"});
  // Wrong types not in tests/models.
  config_error(R"({"in_channels": true})", {"key \"in_channels\" = true: expected an integer"});
  config_error(R"({"in_channels": 1e300})", {"key \"in_channels\"", "expected an integer"});
  config_error(R"({"in_channels": 4294967296})", {"key \"in_channels\"", "expected an integer in the int range"});
  config_error(R"({"sample_size": [32, 32, 32]})", {"key \"sample_size\"", "null, an integer or [height, width]"});
  config_error(R"({"act_fn": null})", {"key \"act_fn\" = null: expected a string"});
  config_error(R"({"dropout": "0.1"})", {"key \"dropout\" = \"0.1\": expected a number"});
  config_error(R"({"_class_name": 5})", {"key \"_class_name\" = 5: expected \"UNet2DModel\""});
  // Unknown block types.
  config_error(R"({"down_block_types": ["DownBlock2D", "MysteryBlock2D", "DownBlock2D", "DownBlock2D"]})",
               {"config.json", "down_block_types", "MysteryBlock2D"});
  config_error(R"({"mid_block_type": "UNetMidBlock3D"})", {"config.json", "mid_block_type", "UNetMidBlock3D"});
}
