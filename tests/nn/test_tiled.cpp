// Tiled decoding and encoding (nn/tiled.hpp, AutoencoderKL / VQModel
// decode_tiled and encode_tiled): bit-equality with a literal
// reimplementation of diffusers' tiled_decode (all tiles kept, blended in
// place, cropped, concatenated), agreement with untiled decoding, and peak
// memory that does not grow with the image area.
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <new>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/nn/autoencoder_kl.hpp"
#include "ddpm/nn/tiled.hpp"
#include "ddpm/nn/vq_model.hpp"
#include "support/tiny_autoencoder.hpp"

// Live and peak bytes of the aligned allocations (every Tensor's storage goes
// through operator new(size, align_val_t)); this test program only.
namespace {
std::atomic<long long> g_live{0}, g_peak{0};
void* counted_new(std::size_t n, std::size_t al) {
  const std::size_t head = std::max<std::size_t>(al, 16);
  void* p = std::aligned_alloc(al, (n + head + al - 1) / al * al);
  if (!p) throw std::bad_alloc();
  *static_cast<std::size_t*>(p) = n;
  const long long now = g_live += static_cast<long long>(n);
  long long peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
  return static_cast<char*>(p) + head;
}
void counted_delete(void* q, std::size_t al) {
  if (!q) return;
  const std::size_t head = std::max<std::size_t>(al, 16);
  void* p = static_cast<char*>(q) - head;
  g_live -= static_cast<long long>(*static_cast<std::size_t*>(p));
  std::free(p);
}
}  // namespace
void* operator new(std::size_t n, std::align_val_t al) { return counted_new(n, static_cast<std::size_t>(al)); }
void* operator new[](std::size_t n, std::align_val_t al) { return counted_new(n, static_cast<std::size_t>(al)); }
void operator delete(void* p, std::align_val_t al) noexcept { counted_delete(p, static_cast<std::size_t>(al)); }
void operator delete[](void* p, std::align_val_t al) noexcept { counted_delete(p, static_cast<std::size_t>(al)); }
void operator delete(void* p, std::size_t, std::align_val_t al) noexcept {
  counted_delete(p, static_cast<std::size_t>(al));
}
void operator delete[](void* p, std::size_t, std::align_val_t al) noexcept {
  counted_delete(p, static_cast<std::size_t>(al));
}

using namespace ddpm;
using R = backend::Reference;

namespace {

template <class Config>
Config tiny(Config c, int sample_size) {
  c = ddpm::test::tiny_autoencoder(c);
  c.sample_size = {sample_size};
  return c;
}
nn::AutoencoderKLConfig tiny_kl(int sample_size = 16) {
  auto c = tiny(nn::AutoencoderKLConfig{}, sample_size);
  c.latent_channels = 2;
  return c;
}
nn::VQModelConfig tiny_vq(int sample_size = 16) {
  auto c = tiny(nn::VQModelConfig{}, sample_size);
  c.latent_channels = 3;
  c.vq_embed_dim = 2;
  c.num_vq_embeddings = 5;
  return c;
}

// A smooth random field [N, C, H, W]: a few sinusoids plus a little noise.
template <class T>
Tensor<T> smooth(Shape s, std::uint64_t seed) {
  Tensor<T> t(s);
  Rng rng(seed);
  std::vector<double> ph(static_cast<std::size_t>(s.dim(1) * 3));
  for (auto& p : ph) p = 6.28 * rng.uniform();
  for (index_t n = 0; n < s.dim(0); ++n)
    for (index_t c = 0; c < s.dim(1); ++c)
      for (index_t y = 0; y < s.dim(2); ++y)
        for (index_t x = 0; x < s.dim(3); ++x) {
          const auto k = static_cast<std::size_t>(c * 3);
          t.at(n, c, y, x) = static_cast<T>(std::sin(0.31 * static_cast<double>(y) + ph[k]) +
                                            0.7 * std::cos(0.23 * static_cast<double>(x) + ph[k + 1]) +
                                            0.3 * std::sin(0.17 * static_cast<double>(x + y) + ph[k + 2] + n) +
                                            0.05 * rng.normal());
        }
  return t;
}

// diffusers' tiled_decode / tiled_encode written out literally: decode every
// tile and keep it, blend each with the (already blended, in place) tile above
// and to its left, crop, concatenate.
template <class T>
Tensor<T> reference_tiled(ConstTensorView<T> z, index_t tile, index_t stride, index_t blend, index_t limit,
                          const std::function<ConstTensorView<T>(ConstTensorView<T>)>& fn) {
  const index_t N = z.dim(0), C = z.dim(1), H = z.dim(2), W = z.dim(3);
  std::vector<std::vector<Tensor<T>>> rows;
  for (index_t i = 0; i < H; i += stride) {
    rows.emplace_back();
    for (index_t j = 0; j < W; j += stride) {
      const index_t th = std::min(tile, H - i), tw = std::min(tile, W - j);
      Tensor<T> t({N, C, th, tw});
      for (index_t n = 0; n < N; ++n)
        for (index_t c = 0; c < C; ++c)
          for (index_t y = 0; y < th; ++y)
            for (index_t x = 0; x < tw; ++x) t.at(n, c, y, x) = z.at(n, c, i + y, j + x);
      rows.back().push_back(Tensor<T>::copy_of(fn(t.cview())));
    }
  }
  auto blend_v = [](const Tensor<T>& a, Tensor<T>& b, index_t e) {
    e = std::min({a.dim(2), b.dim(2), e});
    for (index_t y = 0; y < e; ++y)
      for (index_t n = 0; n < b.dim(0); ++n)
        for (index_t c = 0; c < b.dim(1); ++c)
          for (index_t x = 0; x < b.dim(3); ++x)
          {
            // Each product rounded, then the sum (as torch; no fused multiply-add).
            const volatile T p = a.at(n, c, a.dim(2) - e + y, x) * static_cast<T>(1 - static_cast<double>(y) / e);
            const volatile T q = b.at(n, c, y, x) * static_cast<T>(static_cast<double>(y) / e);
            b.at(n, c, y, x) = p + q;
          }
  };
  auto blend_h = [](const Tensor<T>& a, Tensor<T>& b, index_t e) {
    e = std::min({a.dim(3), b.dim(3), e});
    for (index_t x = 0; x < e; ++x)
      for (index_t n = 0; n < b.dim(0); ++n)
        for (index_t c = 0; c < b.dim(1); ++c)
          for (index_t y = 0; y < b.dim(2); ++y)
          {
            const volatile T p = a.at(n, c, y, a.dim(3) - e + x) * static_cast<T>(1 - static_cast<double>(x) / e);
            const volatile T q = b.at(n, c, y, x) * static_cast<T>(static_cast<double>(x) / e);
            b.at(n, c, y, x) = p + q;
          }
  };
  index_t OH = 0, OW = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) OH += std::min(limit, rows[i][0].dim(2));
  for (std::size_t j = 0; j < rows[0].size(); ++j) OW += std::min(limit, rows[0][j].dim(3));
  const index_t CO = rows[0][0].dim(1);
  Tensor<T> out({N, CO, OH, OW});
  index_t oy = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    index_t ox = 0;
    for (std::size_t j = 0; j < rows[i].size(); ++j) {
      Tensor<T>& t = rows[i][j];
      if (i > 0) blend_v(rows[i - 1][j], t, blend);
      if (j > 0) blend_h(rows[i][j - 1], t, blend);
      const index_t ch = std::min(limit, t.dim(2)), cw = std::min(limit, t.dim(3));
      for (index_t n = 0; n < N; ++n)
        for (index_t c = 0; c < CO; ++c)
          for (index_t y = 0; y < ch; ++y)
            for (index_t x = 0; x < cw; ++x) out.at(n, c, oy + y, ox + x) = t.at(n, c, y, x);
      ox += cw;
    }
    oy += std::min(limit, rows[i][0].dim(2));
  }
  return out;
}

template <class A, class B>
double max_abs_diff(const A& a, const B& b) {
  double m = 0;
  for (index_t i = 0; i < a.numel(); ++i)
    m = std::max(m, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return m;
}
template <class A>
double max_abs(const A& a) {
  double m = 0;
  for (index_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i])));
  return m;
}

}  // namespace

TEST_CASE("tiled geometry is diffusers': tile, stride, blend extent, row limit", "[nn][tiled]") {
  // SD's VAE: sample_size 512, f = 8 -> latent tiles of 64 every 48, blend 128, row_limit 384.
  const auto d = nn::detail::tile_geometry(true, {}, {512}, 8, "AutoencoderKL");
  CHECK(d.tile == 64);
  CHECK(d.stride == 48);
  CHECK(d.blend == 128);
  CHECK(d.limit == 384);
  CHECK(d.result_extent(100) == 800);  // tiles at 0, 48, 96
  const auto e = nn::detail::tile_geometry(false, {}, {512}, 8, "AutoencoderKL");
  CHECK(e.tile == 512);
  CHECK(e.stride == 384);
  CHECK(e.blend == 16);
  CHECK(e.limit == 48);
  CHECK(e.result_extent(1024) == 128);
  // Bad options: one-line errors naming the class and the field.
  CHECK_THROWS_WITH(nn::detail::tile_geometry(true, {0, 1.0}, {512}, 8, "AutoencoderKL"),
                    Catch::Contains("AutoencoderKL") && Catch::Contains("overlap_factor"));
  CHECK_THROWS_WITH(nn::detail::tile_geometry(true, {}, {}, 8, "VQModel"),
                    Catch::Contains("VQModel") && Catch::Contains("sample_size is null"));
  CHECK_THROWS_WITH(nn::detail::tile_geometry(true, {28, 0.25}, {}, 4, "AutoencoderKL"),
                    Catch::Contains("do not line up"));
  CHECK_THROWS_WITH(nn::detail::tile_geometry(true, {4, 0.25}, {}, 4, "AutoencoderKL"),
                    Catch::Contains("too small"));
}

TEMPLATE_TEST_CASE("tiled_map of a pointwise map equals the untiled map up to one rounding", "[nn][tiled]", float,
                   double) {
  using T = TestType;
  // Nearest 2x upsampling of tanh: each output pixel sees one input pixel, so
  // both blended tiles hold the untiled value and a (1 - w) + a w == a up to
  // rounding: |tiled - untiled| <= 2 eps |a|.
  const auto z = smooth<T>({2, 3, 23, 17}, 1);
  auto up = [](ConstTensorView<T> t, Tensor<T>& out) {
    out.resize({t.dim(0), t.dim(1), 2 * t.dim(2), 2 * t.dim(3)});
    for (index_t n = 0; n < t.dim(0); ++n)
      for (index_t c = 0; c < t.dim(1); ++c)
        for (index_t y = 0; y < 2 * t.dim(2); ++y)
          for (index_t x = 0; x < 2 * t.dim(3); ++x) out.at(n, c, y, x) = std::tanh(t.at(n, c, y / 2, x / 2));
    return out.cview();
  };
  Tensor<T> buf, whole, tiled;
  up(z.cview(), whole);
  const auto g = nn::detail::tile_geometry(true, {16, 0.25}, {}, 2, "test");  // tiles of 8, every 6, blend 4
  nn::tiled_map<T>(z.cview(), g, [&](ConstTensorView<T> t) { return up(t, buf); }, tiled);
  REQUIRE(tiled.shape() == whole.shape());
  CHECK(max_abs_diff(tiled, whole) <= 2 * std::numeric_limits<T>::epsilon());
}

TEMPLATE_TEST_CASE("decode_tiled and encode_tiled equal diffusers' algorithm written out, bit for bit", "[nn][tiled]",
                   float, double) {
  using T = TestType;
  nn::AutoencoderKL<T, R> kl(tiny_kl(16));  // f = 2: latent tiles of 8 every 6, blend 4, row limit 12
  Rng rng(3);
  kl.init(rng);
  kl.set_mode(nn::Mode::Inference);
  const auto z = smooth<T>({1, 2, 15, 20}, 2);
  const Tensor<T> tiled = Tensor<T>::copy_of(kl.decode_tiled(z.cview()));
  const Tensor<T> ref = reference_tiled<T>(z.cview(), 8, 6, 4, 12, [&](ConstTensorView<T> t) { return kl.decode(t); });
  REQUIRE(tiled.shape() == Shape{1, 2, 30, 40});
  REQUIRE(ref.shape() == tiled.shape());
  CHECK(max_abs_diff(tiled, ref) == 0);

  // tiled_encode: image tiles of 16 every 12, latent blend 2, row limit 6 (moments, before the posterior).
  const auto x = smooth<T>({1, 2, 28, 20}, 4);
  const Tensor<T> mean = Tensor<T>::copy_of(kl.encode_tiled(x.cview()).mean());
  const Tensor<T> moments = reference_tiled<T>(x.cview(), 16, 12, 2, 6, [&](ConstTensorView<T> t) {
    return kl.encode(t).mean();  // the mean is the moments' first half: compare that half
  });
  REQUIRE(mean.shape() == Shape{1, 2, 14, 10});
  CHECK(max_abs_diff(mean, moments) == 0);

  nn::VQModel<T, R> vq(tiny_vq(16));
  vq.init(rng);
  vq.set_mode(nn::Mode::Inference);
  const auto zq = smooth<T>({2, 2, 13, 9}, 5);
  const Tensor<T> q = Tensor<T>::copy_of(vq.quantizer().forward(zq.cview()));
  const Tensor<T> vt = Tensor<T>::copy_of(vq.decode_tiled(zq.cview()));
  const Tensor<T> vr =
      reference_tiled<T>(q.cview(), 8, 6, 4, 12, [&](ConstTensorView<T> t) { return vq.decode(t, true); });
  REQUIRE(vt.shape() == Shape{2, 2, 26, 18});
  CHECK(max_abs_diff(vt, vr) == 0);
}

TEST_CASE("decode_tiled agrees with untiled decoding within the blend's tolerance", "[nn][tiled]") {
  // The real decoder is not local: GroupNorm statistics and the mid-block
  // attention are per tile, and the 3x3 convolutions see the tile edge. So
  // tiled decoding is an approximation (as in diffusers), and the larger the
  // tiles the closer it gets. (A local map is exact: the pointwise test above.)
  const auto rel_errors = [](bool attention, int tile) {
    auto c = tiny_kl(32);
    c.mid_block_add_attention = attention;
    nn::AutoencoderKL<double, R> kl(c);
    Rng rng(3);
    kl.init(rng);
    kl.set_mode(nn::Mode::Inference);
    Tensor<double> z({1, 2, 40, 40});
    rng.fill_normal(z.span());  // stationary: each tile's statistics are close to the whole latent's
    const Tensor<double> whole = Tensor<double>::copy_of(kl.decode(z.cview()));
    const Tensor<double> tiled = Tensor<double>::copy_of(kl.decode_tiled(z.cview(), {tile, 0.25}));
    REQUIRE(tiled.shape() == whole.shape());
    double se = 0, sw = 0;
    for (index_t i = 0; i < whole.numel(); ++i) {
      se += (tiled[i] - whole[i]) * (tiled[i] - whole[i]);
      sw += whole[i] * whole[i];
    }
    return std::pair{max_abs_diff(tiled, whole) / max_abs(whole), std::sqrt(se / sw)};
  };
  // Stated tolerance, for this randomly initialised tiny VAE (its receptive
  // field, a dozen 3x3 convolutions, is wider than the blend of tiles of 16) on a
  // 40x40 N(0, 1) latent, relative to the untiled result (measured in brackets):
  //   tiles of 16 latent pixels: RMS < 0.35 (0.28), max < 0.45 (0.37)
  //   tiles of 24:               RMS < 0.25 (0.18), max < 0.45 (0.35)
  //   tiles of 32:               RMS < 0.16 (0.12), max < 0.20 (0.15)
  //   one tile (64):             exact
  // and the error shrinks as the tiles grow; without the attention it is about the same.
  const std::pair<double, double> bound[] = {{0.35, 0.45}, {0.25, 0.45}, {0.16, 0.20}, {0, 0}};
  for (bool attention : {true, false}) {
    double previous = 1;
    int k = 0;
    for (int tile : {32, 48, 64, 128}) {
      const auto [mx, rms] = rel_errors(attention, tile);
      WARN("tiled vs untiled decode (tiny VAE, 40x40 N(0,1) latent, attention " << attention << ", tiles of "
                                                                                << tile / 2 << "): max " << mx
                                                                                << ", RMS " << rms);
      CHECK(rms <= bound[k].first);
      CHECK(mx <= bound[k].second);
      CHECK(rms < previous);
      if (tile < 128) CHECK(rms > 0);  // an approximation: a comparison with itself would read 0
      previous = rms;
      ++k;
    }
  }
}

TEST_CASE("decode_tiled's working memory does not grow with the image area", "[nn][tiled][memory]") {
  // Peak live bytes allocated during one decode on a fresh model, less the
  // result tensor itself. Tiled: about the same for a 16x16 and a 64x64
  // latent (16x the area); untiled: it grows with the area.
  const auto peak_extra = [](index_t side, bool tiled) {
    nn::AutoencoderKL<float, R> kl(tiny_kl(16));
    Rng rng(3);
    kl.init(rng);
    kl.set_mode(nn::Mode::Inference);
    const auto z = smooth<float>({1, 2, side, side}, 9);
    const long long before = g_live.load();
    g_peak = before;
    const auto out = tiled ? kl.decode_tiled(z.cview()) : kl.decode(z.cview());
    const long long result = static_cast<long long>(out.numel() * sizeof(float));
    return static_cast<double>(g_peak.load() - before - result);
  };
  const double small_t = peak_extra(16, true), large_t = peak_extra(64, true);
  const double small_u = peak_extra(16, false), large_u = peak_extra(64, false);
  WARN("peak working bytes: tiled " << small_t << " (16x16 latent) -> " << large_t << " (64x64); untiled "
                                    << small_u << " -> " << large_u);
  // Tiled: the blend strip (blend_extent rows of each tile above) grows with
  // the width only: 4 x 2 channels x 12 tiles x 16 x 4 bytes here, well under 20%.
  CHECK(large_t < 1.2 * small_t);
  CHECK(large_u > 8 * small_u);  // the measurement sees growth where there is some
  CHECK(large_t < large_u / 8);
}
