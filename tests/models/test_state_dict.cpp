// io/state_dict.hpp: all-or-nothing loads with one error listing every problem,
// legacy attention names, dtype conversion, atomic saves.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include "ddpm/io/state_dict.hpp"

using namespace ddpm;

namespace {

Parameters<float> make_params() {
  Parameters<float> p;
  p.add("conv_in.weight", {2, 1, 3, 3});
  p.add("conv_in.bias", {2});
  p.add("mid_block.attentions.0.to_q.weight", {2, 2});
  p.add("mid_block.attentions.0.to_out.0.bias", {2});
  return p;
}

void fill_iota(Parameters<float>& p, float start) {
  float v = start;
  for (auto& x : p.values()) x = v++;
}

std::string load_error(Parameters<float>& p, const io::SafeTensors& st) {
  try {
    io::load_state_dict(p, st);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("state_dict round trip through safetensors bytes", "[models]") {
  auto a = make_params();
  fill_iota(a, 1);
  auto st = io::SafeTensors::from_bytes(io::state_dict_writer(a).bytes(), "mem");
  auto b = make_params();
  io::load_state_dict(b, st);
  CHECK(std::equal(a.values().begin(), a.values().end(), b.values().begin()));
  // double model from float file
  Parameters<double> d;
  for (auto& info : a.infos()) d.add(info.name, info.shape);
  io::load_state_dict(d, st);
  CHECK(d.values()[5] == 6.0);
}

TEST_CASE("state_dict accepts legacy attention names and F16/F64 tensors", "[models]") {
  io::SafeTensorsWriter w;
  std::vector<float> w9(18, 0.5f), b2{1, 2}, q4{1, 2, 3, 4};
  std::vector<double> o2{7, 8};
  w.add("conv_in.weight", w9.data(), std::vector<index_t>{2, 1, 3, 3});
  w.add("conv_in.bias", b2.data(), std::vector<index_t>{2});
  w.add("mid_block.attentions.0.query.weight", q4.data(), std::vector<index_t>{2, 2});
  w.add("mid_block.attentions.0.proj_attn.bias", o2.data(), std::vector<index_t>{2});
  auto p = make_params();
  io::load_state_dict(p, io::SafeTensors::from_bytes(w.bytes(), "legacy"));
  CHECK(p.value(p.id("mid_block.attentions.0.to_q.weight"))[3] == 4.0f);
  CHECK(p.value(p.id("mid_block.attentions.0.to_out.0.bias"))[1] == 8.0f);
  CHECK(io::modern_attention_name("a.key.bias") == "a.to_k.bias");
  CHECK(io::modern_attention_name("a.value.weight") == "a.to_v.weight");
  CHECK(io::modern_attention_name("a.keys.bias") == "a.keys.bias");
}

TEST_CASE("state_dict load failures list every problem at once and change nothing", "[models]") {
  io::SafeTensorsWriter w;
  std::vector<float> w8(8, 0.5f), b2{1, 2}, x3{1, 2, 3};
  std::vector<std::int64_t> i4{1, 2, 3, 4};
  w.add("conv_in.weight", w8.data(), std::vector<index_t>{2, 1, 2, 2});           // wrong shape
  w.add("conv_in.bias", b2.data(), std::vector<index_t>{2});                      // fine
  w.add("mid_block.attentions.0.to_q.weight", i4.data(), std::vector<index_t>{2, 2});  // integer dtype
  w.add("extra.weight", x3.data(), std::vector<index_t>{3});                      // unexpected
  // mid_block.attentions.0.to_out.0.bias missing
  auto p = make_params();
  fill_iota(p, 100);
  const std::vector<float> before(p.values().begin(), p.values().end());
  const std::string msg = load_error(p, io::SafeTensors::from_bytes(w.bytes(), "broken.safetensors"));
  INFO(msg);
  CHECK(msg.find("broken.safetensors") != std::string::npos);
  CHECK(msg.find("conv_in.weight") != std::string::npos);
  CHECK(msg.find("[2, 1, 3, 3]") != std::string::npos);
  CHECK(msg.find("to_q.weight") != std::string::npos);
  CHECK(msg.find("I64") != std::string::npos);
  CHECK(msg.find("extra.weight") != std::string::npos);
  CHECK(msg.find("to_out.0.bias") != std::string::npos);
  CHECK(msg.find("conv_in.bias") == std::string::npos);
  CHECK(std::equal(before.begin(), before.end(), p.values().begin()));
}

TEST_CASE("state_dict save is atomic", "[models]") {
  const auto dir = std::filesystem::path(DDPM_TEST_TMP_DIR) / "state_dict";
  std::filesystem::create_directories(dir);
  auto p = make_params();
  fill_iota(p, 1);
  io::state_dict_writer(p).save(dir / "w.safetensors");
  fill_iota(p, 50);
  io::write_fault_hook() = [](std::size_t) { throw Error("simulated disk failure"); };
  CHECK_THROWS_AS(io::state_dict_writer(p).save(dir / "w.safetensors"), Error);
  io::write_fault_hook() = nullptr;
  auto q = make_params();
  io::load_state_dict(q, io::SafeTensors::load(dir / "w.safetensors"));
  CHECK(q.values()[0] == 1.0f);
}
