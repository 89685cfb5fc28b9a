// The golden folder itself: present, non-empty, every kind understood, every
// file it lists present with the stated size.
#include "support/golden.hpp"

using namespace ddpm::test;

TEST_CASE("golden manifest lists only kinds the harness understands", "[golden]") {
  const json m = manifest();
  for (auto& [kind, file] : m["kinds"].items()) {
    INFO("kind " << kind);
    CHECK(known_golden_kinds().count(kind) == 1);
    CHECK(fs::exists(golden_dir() / file.get<std::string>()));
  }
}

TEST_CASE("golden manifest files exist with their stated sizes", "[golden]") {
  const json m = manifest();
  REQUIRE(m.contains("files"));
  REQUIRE(!m["files"].empty());
  for (auto& f : m["files"]) {
    const auto p = golden_dir() / f.at("path").get<std::string>();
    if (p.extension() == ".md") continue;  // prose may be edited after the data was made
    INFO(p);
    REQUIRE(fs::exists(p));
    CHECK(fs::file_size(p) == f.at("bytes").get<std::uintmax_t>());
  }
}
