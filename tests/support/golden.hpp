#pragma once
// The golden harness: finds reference data made with diffusers at run time.
//
// The data may span several folders: $DDPM_GOLDEN_DIR holds one folder or a
// ':'-separated list; unset, it is tests/data/golden and tests/data/golden-more
// in the repository (DDPM_DEFAULT_GOLDEN_DIR and DDPM_DEFAULT_GOLDEN_MORE_DIR,
// set by tests/CMakeLists.txt). Every folder has a manifest.json; a kind is
// loaded from the folder whose manifest lists it, and every case in it is
// checked; nothing here names a case. A manifest listing a kind this harness
// does not know fails (tests/golden/test_manifest.cpp checks every folder's).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ddpm/core/tensor.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/io/json.hpp"
#include "ddpm/io/safetensors.hpp"

namespace ddpm::test {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The kinds this harness understands; a manifest naming any other fails.
inline const std::set<std::string>& known_golden_kinds() {
  static const std::set<std::string> kinds{"schedules", "timesteps",   "ddpm_step", "ddim_step", "forward_process",
                                           "trajectories", "unet", "checkpoint_configs", "autoencoder",
                                           "sampler_trajectories", "pipelines"};
  return kinds;
}

#ifndef DDPM_DEFAULT_GOLDEN_MORE_DIR
#define DDPM_DEFAULT_GOLDEN_MORE_DIR DDPM_SOURCE_DIR "/tests/data/golden-more"
#endif

// Every golden folder, in search order (each checked to hold a manifest.json).
inline std::vector<fs::path> golden_dirs() {
  const char* env = std::getenv("DDPM_GOLDEN_DIR");
  const std::string list = (env && *env) ? std::string(env)
                                         : std::string(DDPM_DEFAULT_GOLDEN_DIR) + ":" + DDPM_DEFAULT_GOLDEN_MORE_DIR;
  std::vector<fs::path> dirs;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t end = std::min(list.find(':', start), list.size());
    if (end > start) {
      const fs::path dir = list.substr(start, end - start);
      if (!fs::is_directory(dir)) FAIL("golden data folder not found: " << dir << " (set DDPM_GOLDEN_DIR)");
      if (!fs::exists(dir / "manifest.json")) FAIL("golden data folder " << dir << " has no manifest.json");
      dirs.push_back(dir);
    }
    start = end + 1;
  }
  if (dirs.empty()) FAIL("DDPM_GOLDEN_DIR names no folder");
  return dirs;
}

// The first golden folder (the one holding the original kinds by default).
inline fs::path golden_dir() { return golden_dirs().front(); }

// diffusers' JSON may hold Python's -Infinity / NaN literals (io/json.hpp).
inline json load_json(const fs::path& p) {
  try {
    return io::parse_python_json(io::read_text_file(p), p.string());
  } catch (const Error& e) {
    FAIL(e.what());
  }
  return {};
}

// The manifest of one golden folder (default: the first).
inline json manifest(const fs::path& dir) {
  json m = load_json(dir / "manifest.json");
  if (!m.contains("kinds") || !m["kinds"].is_object() || m["kinds"].empty())
    FAIL(dir / "manifest.json" << " lists no kinds");
  return m;
}
inline json manifest() { return manifest(golden_dir()); }

// The golden folder whose manifest lists `kind`, or nullopt when none does.
inline std::optional<fs::path> golden_dir_of(const std::string& kind) {
  for (const fs::path& dir : golden_dirs())
    if (manifest(dir)["kinds"].contains(kind)) return dir;
  return std::nullopt;
}

// One kind's JSON document and, where it has one, its tensors file.
struct GoldenKind {
  std::string kind;
  fs::path root;  // the golden folder whose manifest lists the kind
  fs::path dir;   // the folder of the kind's JSON file
  json doc;
  std::optional<io::SafeTensors> tensors;
  const json& cases() const { return doc.at("cases"); }
  // A case's folder: its "dir", relative to the golden folder, or else beside the kind's JSON file.
  fs::path case_dir(const json& c) const {
    const fs::path rel = c.at("dir").get<std::string>();
    return fs::exists(root / rel) ? root / rel : dir / rel.filename();
  }
};

// Loads `kind` via the manifest that lists it. Returns nullopt (with a warning) when the
// manifest does not list it; fails when it is listed but empty or unreadable.
inline std::optional<GoldenKind> load_kind(const std::string& kind) {
  const auto root = golden_dir_of(kind);
  if (!root) {
    WARN("golden kind '" << kind << "' is in no manifest: nothing to check");
    return std::nullopt;
  }
  const json m = manifest(*root);
  GoldenKind g;
  g.kind = kind;
  g.root = *root;
  const fs::path file = *root / m["kinds"][kind].get<std::string>();
  g.dir = file.parent_path();
  g.doc = load_json(file);
  if (g.doc.contains("kind") && g.doc["kind"].is_string() && g.doc["kind"] != kind && kind != "unet" &&
      kind != "checkpoint_configs")
    FAIL(file << ": says kind '" << g.doc["kind"].get<std::string>() << "', manifest says '" << kind << "'");
  if (g.doc.contains("cases") && g.doc["cases"].empty()) FAIL(file << ": no cases");
  fs::path st = file;
  st.replace_extension(".safetensors");
  if (fs::exists(st)) g.tensors = io::SafeTensors::load(st);
  return g;
}

// Reads a case's tensor by role (the case's "tensors" map gives the key).
template <class T>
Tensor<T> case_tensor(const GoldenKind& g, const json& c, const std::string& role) {
  if (!c.contains("tensors") || !c["tensors"].contains(role))
    FAIL("case " << c.value("name", "?") << " has no tensor role '" << role << "'");
  if (!g.tensors) FAIL("kind " << g.kind << " has no .safetensors file");
  return g.tensors->get<T>(c["tensors"][role].get<std::string>());
}

// A tolerance the data states in prose, e.g. the timesteps file's
// "sigmas: float32, rtol 1e-6": each marker is found after the previous one,
// and the number right after the last is read. Fails (naming `where`) when a
// marker or the number is missing, so a tolerance is never made up here.
inline double stated_number(const json& text, std::initializer_list<std::string_view> markers,
                            const std::string& where) {
  if (!text.is_string()) FAIL(where << ": expected a tolerance text, got " << text.dump());
  const std::string s = text.get<std::string>();
  std::size_t pos = 0;
  for (std::string_view m : markers) {
    pos = s.find(m, pos);
    if (pos == std::string::npos) FAIL(where << ": '" << m << "' not found in tolerance \"" << s << "\"");
    pos += m.size();
  }
  const char* begin = s.c_str() + pos;
  char* end = nullptr;
  const double v = std::strtod(begin, &end);
  if (end == begin || !(v > 0) || !std::isfinite(v))
    FAIL(where << ": no positive number after '" << *(markers.end() - 1) << "' in tolerance \"" << s << "\"");
  return v;
}

// Worst agreement of `x` with `ref` under |x - ref| <= atol + rtol |ref|.
struct Deviation {
  double max_abs = 0;      // largest |x - ref|
  double max_rel = 0;      // largest |x - ref| / max|ref|
  double worst_ratio = 0;  // largest |x - ref| / allowed (<= 1 passes)
  index_t worst_index = -1;
  bool shape_ok = true;
  bool ok() const { return shape_ok && worst_ratio <= 1.0; }
};

template <class A, class B>
Deviation deviation(const A* x, const B* ref, index_t n, double atol, double rtol) {
  Deviation d;
  double ref_max = 0;
  for (index_t i = 0; i < n; ++i) ref_max = std::max(ref_max, std::abs(static_cast<double>(ref[i])));
  for (index_t i = 0; i < n; ++i) {
    const double r = static_cast<double>(ref[i]), v = static_cast<double>(x[i]);
    const double err = std::abs(v - r);
    const double allowed = atol + rtol * std::abs(r);
    const double ratio = (std::isnan(v) != std::isnan(r)) ? INFINITY
                         : std::isnan(err)                ? 0.0
                         : allowed > 0                    ? err / allowed
                         : (err > 0 ? INFINITY : 0.0);
    if (!std::isnan(err)) {
      d.max_abs = std::max(d.max_abs, err);
      if (ref_max > 0) d.max_rel = std::max(d.max_rel, err / ref_max);
    }
    if (ratio > d.worst_ratio || (std::isinf(ratio) && d.worst_index < 0)) d.worst_ratio = ratio, d.worst_index = i;
  }
  return d;
}

template <class A, class B>
Deviation deviation(ConstTensorView<A> x, ConstTensorView<B> ref, double atol, double rtol = 0) {
  if (x.numel() != ref.numel()) {
    Deviation d;
    d.shape_ok = false;
    d.worst_ratio = INFINITY;
    return d;
  }
  return deviation(x.data(), ref.data(), x.numel(), atol, rtol);
}

// Collects the largest deviation per (kind, quantity) and prints a summary,
// so the numbers a release note quotes come from the test run itself.
class DeviationReport {
 public:
  explicit DeviationReport(std::string kind) : kind_(std::move(kind)) {}
  ~DeviationReport() {
    std::ostringstream os;
    os << "[golden] " << kind_ << ": " << cases_ << " cases checked";
    for (auto& [k, v] : worst_)
      os << "\n[golden]   " << k << ": max |x - ref| = " << v.max_abs << ", max rel. to max|ref| = " << v.max_rel
         << ", worst fraction of tolerance = " << v.worst_ratio;
    std::printf("%s\n", os.str().c_str());
  }
  void add(const std::string& quantity, const Deviation& d) {
    auto& w = worst_[quantity];
    w.max_abs = std::max(w.max_abs, d.max_abs);
    w.max_rel = std::max(w.max_rel, d.max_rel);
    w.worst_ratio = std::max(w.worst_ratio, d.worst_ratio);
  }
  void count_case() { ++cases_; }
  int cases() const { return cases_; }

 private:
  std::string kind_;
  int cases_ = 0;
  std::map<std::string, Deviation> worst_;
};

}  // namespace ddpm::test
