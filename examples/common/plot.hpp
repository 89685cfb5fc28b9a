#pragma once
// A tiny raster plotter for the examples' pictures (no text: the axes and
// colours are described where the picture is shown). Data coordinates map
// to pixels through the ranges given at construction.
//
//   examples::Plot p(480, 360, {-1, 1}, {-3.2, 3.2});
//   p.axes();                                   // the lines x = 0 and y = 0, a frame
//   p.curve(xs, ys, examples::kBlack);          // a polyline
//   p.dot(0.5, 0.52, examples::kBlue);          // a point
//   ddpm::io::write_png("plot.png", p.image());
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "ddpm/io/image.hpp"

namespace examples {

struct Rgb {
  std::uint8_t r, g, b;
};
inline constexpr Rgb kBlack{0, 0, 0}, kGrey{190, 190, 190}, kBlue{40, 90, 220}, kRed{220, 40, 40},
    kGreen{30, 160, 60}, kWhite{255, 255, 255};

struct Range {
  double lo, hi;
};

class Plot {
 public:
  Plot(int width, int height, Range x, Range y, int margin = 12)
      : img_{width, height, 3, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * 3, 255)},
        x_(x), y_(y), margin_(margin) {}

  const ddpm::io::Image& image() const { return img_; }

  // A frame around the plotting area and the lines x = 0, y = 0 (when in range).
  void axes() {
    const double l = x_.lo, r = x_.hi, b = y_.lo, t = y_.hi;
    line(l, b, r, b, kGrey), line(l, t, r, t, kGrey), line(l, b, l, t, kGrey), line(r, b, r, t, kGrey);
    if (l < 0 && r > 0) line(0, b, 0, t, kGrey);
    if (b < 0 && t > 0) line(l, 0, r, 0, kGrey);
  }
  // Dashed horizontal line at y (e.g. the edges of a data range).
  void hline(double y, Rgb c) {
    for (double x = x_.lo; x < x_.hi; x += (x_.hi - x_.lo) / 60) line(x, y, x + (x_.hi - x_.lo) / 120, y, c);
  }

  void dot(double x, double y, Rgb c, int radius = 1, double alpha = 1.0) {
    const int px = col(x), py = row(y);
    for (int dy = -radius; dy <= radius; ++dy)
      for (int dx = -radius; dx <= radius; ++dx)
        if (dx * dx + dy * dy <= radius * radius + radius / 2) blend(px + dx, py + dy, c, alpha);
  }

  void line(double x0, double y0, double x1, double y1, Rgb c, int thickness = 1) {
    const double c0 = col_f(x0), r0 = row_f(y0), c1 = col_f(x1), r1 = row_f(y1);
    const int steps = static_cast<int>(std::max(std::abs(c1 - c0), std::abs(r1 - r0))) + 1;
    for (int i = 0; i <= steps; ++i) {
      const double f = static_cast<double>(i) / steps;
      const int px = static_cast<int>(std::lround(c0 + f * (c1 - c0))), py = static_cast<int>(std::lround(r0 + f * (r1 - r0)));
      for (int d = -(thickness / 2); d <= thickness / 2; ++d) blend(px + d, py, c, 1.0), blend(px, py + d, c, 1.0);
    }
  }

  // A polyline through (xs[i], ys[i]); a jump larger than `max_jump` in y
  // (a branch change) is not drawn.
  void curve(std::span<const double> xs, std::span<const double> ys, Rgb c, int thickness = 2,
             double max_jump = INFINITY) {
    for (std::size_t i = 1; i < xs.size(); ++i)
      if (std::isfinite(ys[i - 1]) && std::isfinite(ys[i]) && std::abs(ys[i] - ys[i - 1]) <= max_jump)
        line(xs[i - 1], ys[i - 1], xs[i], ys[i], c, thickness);
  }

 private:
  double col_f(double x) const { return margin_ + (x - x_.lo) / (x_.hi - x_.lo) * (img_.width - 1 - 2 * margin_); }
  double row_f(double y) const { return img_.height - 1 - margin_ - (y - y_.lo) / (y_.hi - y_.lo) * (img_.height - 1 - 2 * margin_); }
  int col(double x) const { return static_cast<int>(std::lround(col_f(x))); }
  int row(double y) const { return static_cast<int>(std::lround(row_f(y))); }
  void blend(int x, int y, Rgb c, double a) {
    if (x < 0 || y < 0 || x >= img_.width || y >= img_.height) return;
    auto* p = &img_.pixels[(static_cast<std::size_t>(y) * img_.width + x) * 3];
    const std::uint8_t v[3] = {c.r, c.g, c.b};
    for (int k = 0; k < 3; ++k) p[k] = static_cast<std::uint8_t>(std::lround((1 - a) * p[k] + a * v[k]));
  }

  ddpm::io::Image img_;
  Range x_, y_;
  int margin_;
};

// Two pictures of the same height next to each other (e.g. two panels).
inline ddpm::io::Image side_by_side(const ddpm::io::Image& left, const ddpm::io::Image& right) {
  ddpm::require(left.height == right.height && left.channels == right.channels,
                "side_by_side: expected pictures of the same height and channels");
  const int w = left.width + right.width, c = left.channels;
  ddpm::io::Image out{w, left.height, c, std::vector<std::uint8_t>(static_cast<std::size_t>(w) * left.height * c)};
  for (int y = 0; y < left.height; ++y) {
    const auto row = [&](const ddpm::io::Image& img) { return img.pixels.begin() + static_cast<std::ptrdiff_t>(y) * img.width * c; };
    auto dst = std::copy(row(left), row(left) + left.width * c, out.pixels.begin() + static_cast<std::ptrdiff_t>(y) * w * c);
    std::copy(row(right), row(right) + right.width * c, dst);
  }
  return out;
}

}  // namespace examples
