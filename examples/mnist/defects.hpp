#pragma once
// Synthetic defects on digits, for measuring anomaly detection: a scratch
// (a thin straight stroke across the image), a blob (a filled ellipse of
// ink) or a missing stroke (the ink erased in a disc centred on an ink
// pixel). Image i of a set gets kind (first_index + i) mod 3, its geometry
// drawn from Rng(seed, first_index + i), so a defect depends only on the
// seed, the image's index and the image. The mask marks the pixels the
// defect changed by more than half the [-1, 1] range; a defect is redrawn
// (same stream, next numbers) until its mask has at least kMinDefectPixels.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string_view>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "mnist_data.hpp"

namespace mnist {

enum class DefectKind { scratch, blob, missing_stroke };
inline constexpr int kDefectKinds = 3;
inline constexpr ddpm::index_t kMinDefectPixels = 6;

inline std::string_view to_string(DefectKind k) {
  switch (k) {
    case DefectKind::scratch: return "scratch";
    case DefectKind::blob: return "blob";
    case DefectKind::missing_stroke: return "missing stroke";
  }
  return "?";
}

struct Defects {
  ddpm::Tensor<float> images;  // [N, 1, 28, 28] in [-1, 1]
  ddpm::Tensor<float> masks;   // [N, 1, 28, 28], 1 where the defect changed the image
  std::vector<DefectKind> kinds;
};

namespace detail {

// Distance from (x, y) to the segment (ax, ay)-(bx, by).
inline double segment_distance(double x, double y, double ax, double ay, double bx, double by) {
  const double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
  const double u = len2 > 0 ? std::clamp(((x - ax) * dx + (y - ay) * dy) / len2, 0.0, 1.0) : 0.0;
  const double px = ax + u * dx - x, py = ay + u * dy - y;
  return std::sqrt(px * px + py * py);
}

// Draws one defect of kind k into img (28 x 28, [-1, 1]) from rng.
inline void draw_defect(DefectKind k, float* img, ddpm::Rng& rng) {
  const auto at = [&](int x, int y) -> float& { return img[y * kImageSide + x]; };
  switch (k) {
    case DefectKind::scratch: {  // ~2 px wide, 12-22 px long, any direction, through the middle 16 x 16
      const double cx = rng.uniform(6, 22), cy = rng.uniform(6, 22), len = rng.uniform(12, 22);
      const double a = rng.uniform(0, std::numbers::pi);
      const double ax = cx - 0.5 * len * std::cos(a), ay = cy - 0.5 * len * std::sin(a);
      const double bx = cx + 0.5 * len * std::cos(a), by = cy + 0.5 * len * std::sin(a);
      for (int y = 0; y < kImageSide; ++y)
        for (int x = 0; x < kImageSide; ++x)
          if (segment_distance(x, y, ax, ay, bx, by) <= 0.8) at(x, y) = 1.0f;
      break;
    }
    case DefectKind::blob: {  // an ellipse with radii 3-5 px
      const double cx = rng.uniform(5, 23), cy = rng.uniform(5, 23), rx = rng.uniform(3, 5), ry = rng.uniform(3, 5);
      for (int y = 0; y < kImageSide; ++y)
        for (int x = 0; x < kImageSide; ++x) {
          const double u = (x - cx) / rx, v = (y - cy) / ry;
          if (u * u + v * v <= 1) at(x, y) = 1.0f;
        }
      break;
    }
    case DefectKind::missing_stroke: {  // a disc of radius 4-5.5 px around an ink pixel, erased
      std::vector<int> ink;
      for (int p = 0; p < kPixels; ++p)
        if (img[p] > 0) ink.push_back(p);
      if (ink.empty()) return;
      const int c = ink[static_cast<std::size_t>(rng.uniform_int(ink.size()))];
      const double cx = c % kImageSide, cy = c / kImageSide, r = rng.uniform(4, 5.5);
      for (int y = 0; y < kImageSide; ++y)
        for (int x = 0; x < kImageSide; ++x)
          if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r) at(x, y) = -1.0f;
      break;
    }
  }
}

}  // namespace detail

// Defective copies of `digits` [N, 1, 28, 28] in [-1, 1], with their masks.
inline Defects add_defects(ddpm::ConstTensorView<float> digits, std::uint64_t seed, ddpm::index_t first_index = 0) {
  ddpm::require(digits.rank() == 4 && digits.dim(1) == 1 && digits.dim(2) == kImageSide && digits.dim(3) == kImageSide,
                "add_defects: expected digits [N, 1, 28, 28], got ", digits.shape().str());
  ddpm::require(first_index >= 0, "add_defects: first_index must be >= 0, got ", first_index);
  const ddpm::index_t n = digits.dim(0);
  Defects d;
  d.images = ddpm::Tensor<float>::copy_of(digits);
  d.masks = ddpm::Tensor<float>(digits.shape());
  d.kinds.resize(static_cast<std::size_t>(n));
  for (ddpm::index_t i = 0; i < n; ++i) {
    const auto kind = static_cast<DefectKind>((first_index + i) % kDefectKinds);
    d.kinds[static_cast<std::size_t>(i)] = kind;
    ddpm::Rng rng(seed, static_cast<std::uint64_t>(first_index + i));
    const float* src = digits.data() + i * kPixels;
    float* img = d.images.data() + i * kPixels;
    float* mask = d.masks.data() + i * kPixels;
    for (int attempt = 0;; ++attempt) {
      std::copy(src, src + kPixels, img);
      detail::draw_defect(kind, img, rng);
      ddpm::index_t changed = 0;
      for (ddpm::index_t p = 0; p < kPixels; ++p) {
        mask[p] = std::abs(img[p] - src[p]) > 1.0f ? 1.0f : 0.0f;
        changed += mask[p] > 0;
      }
      if (changed >= kMinDefectPixels) break;
      ddpm::require(attempt < 100, "add_defects: image ", first_index + i, " has no room for a ", to_string(kind),
                    " (blank image?)");
    }
  }
  return d;
}

}  // namespace mnist
