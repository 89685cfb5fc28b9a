#pragma once
// Tiled decoding and encoding, as diffusers' AutoencoderKL.tiled_decode /
// tiled_encode do it: the input is cut into overlapping square tiles, each
// tile goes through the network on its own, and neighbouring results are
// blended linearly over their overlap, then cropped and placed side by side.
//
// Geometry (diffusers' names; f = 2^(len(block_out_channels) - 1)):
//   tile_sample_min_size = TileOptions::tile_sample_size (0: config.sample_size[0])
//   tile_latent_min_size = int(tile_sample_min_size / f)
//   decode: tiles of tile_latent_min_size latent pixels every
//           int(tile_latent_min_size (1 - overlap)) pixels;
//           blend_extent = int(tile_sample_min_size overlap), row_limit = tile_sample_min_size - blend_extent
//   encode: tiles of tile_sample_min_size pixels every int(tile_sample_min_size (1 - overlap));
//           blend_extent = int(tile_latent_min_size overlap), row_limit = tile_latent_min_size - blend_extent
// Tiles start at 0, stride, 2 stride, ... < extent (the last ones are
// smaller where the input ends). Tile (i, j) is blended with the tile above
// it and then with the tile to its left, both as already blended:
//   blend_v: b[:, :, y, :] = a[:, :, -e + y, :] (1 - y / e) + b[:, :, y, :] (y / e),  y < e
//   blend_h: b[:, :, :, x] = a[:, :, :, -e + x] (1 - x / e) + b[:, :, :, x] (x / e),  x < e
// with e = min(height (width) of a, of b, blend_extent), the weights computed
// in double and rounded to T (as torch multiplies a float tensor by a Python
// float), then tile[:, :, :row_limit, :row_limit] is the tile's part of the result.
// The seams line up only when row_limit = f stride (decode) or stride / f
// (encode); other tile sizes are refused (diffusers would misplace tiles).
//
// Agreement with untiled decoding: a pixel farther than the network's
// receptive field from every tile edge is decoded exactly as without tiles,
// and the blend of two equal values returns that value up to one rounding.
// Where a tile edge is within the receptive field, the tiles differ from the
// untiled result and the blend only smooths the seam; GroupNorm statistics
// and the mid-block attention are per tile, so for the real decoders tiled
// decoding is an approximation (diffusers documents the same).
//
// Memory: tiles are processed one at a time, in row-major order. Besides the
// result, a pass holds one input tile, one output tile, the last blend_extent
// columns of the tile to the left and the last blend_extent rows of each tile
// of the row above (a strip blend_extent high and about 1 / (1 - overlap)
// times the output wide); the network's own buffers are sized by the tile.
// So the working memory does not grow with the image area.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::nn {

struct TileOptions {
  // diffusers' tile_sample_min_size in image pixels; 0: the model's config.sample_size[0].
  index_t tile_sample_size = 0;
  // diffusers' tile_overlap_factor.
  double overlap_factor = 0.25;
};

// One tiled pass: tiles of `tile` input pixels every `stride`; results blended
// over `blend` output pixels and cropped to `limit`; the output extent of an
// input extent n is n * out_num / out_den.
struct TileGeometry {
  index_t tile = 0, stride = 0, blend = 0, limit = 0, out_num = 1, out_den = 1;

  index_t out_extent(index_t in) const { return in * out_num / out_den; }
  // The result's extent for an input extent n: the sum of the tiles' crops.
  index_t result_extent(index_t n) const {
    index_t total = 0;
    for (index_t i = 0; i < n; i += stride) total += std::min(limit, out_extent(std::min(tile, n - i)));
    return total;
  }
};

// a (1 - w) + b w, rounded as torch computes it: each product, then the sum.
// The volatiles keep the compiler from fusing a product and the sum into one
// multiply-add, which would round differently and depend on the target.
template <Scalar T>
T blend_value(T a, T wa, T b, T wb) {
  const volatile T p = a * wa;
  const volatile T q = b * wb;
  return p + q;
}

namespace detail {

// Checks the options and the seam condition; `sample_size` is config.sample_size (may be empty).
inline TileGeometry tile_geometry(bool decode, const TileOptions& opt, const std::vector<int>& sample_size,
                                  index_t factor, const char* cls) {
  require(opt.overlap_factor > 0 && opt.overlap_factor < 1, cls, ": TileOptions::overlap_factor = ",
          opt.overlap_factor, " must be in (0, 1)");
  index_t sample = opt.tile_sample_size;
  if (sample == 0) {
    require(!sample_size.empty(), cls,
            ": config.sample_size is null; give TileOptions::tile_sample_size (the tile size in image pixels)");
    sample = sample_size[0];
  }
  require(sample > 0, cls, ": TileOptions::tile_sample_size = ", sample, " must be > 0");
  const auto latent = static_cast<index_t>(static_cast<double>(sample) / static_cast<double>(factor));
  const double keep = 1 - opt.overlap_factor;
  TileGeometry g;
  if (decode) {
    g = {latent, static_cast<index_t>(static_cast<double>(latent) * keep),
         static_cast<index_t>(static_cast<double>(sample) * opt.overlap_factor), 0, factor, 1};
    g.limit = sample - g.blend;
  } else {
    g = {sample, static_cast<index_t>(static_cast<double>(sample) * keep),
         static_cast<index_t>(static_cast<double>(latent) * opt.overlap_factor), 0, 1, factor};
    g.limit = latent - g.blend;
  }
  require(g.tile > 0 && g.stride > 0 && g.limit > 0, cls, ": tiles of ", sample, " pixels with overlap ",
          opt.overlap_factor, " are too small for a downsampling factor of ", factor);
  require(g.limit * g.out_den == g.stride * g.out_num, cls, ": tiles of ", sample, " pixels with overlap ",
          opt.overlap_factor, " do not line up (row_limit ", g.limit, " != ", g.out_num, "/", g.out_den,
          " x stride ", g.stride, "); use a tile size that is a multiple of ",
          factor * static_cast<index_t>(std::lround(1 / opt.overlap_factor)));
  return g;
}

}  // namespace detail

// Runs `fn` on every tile of `in` [N, C, H, W] and writes the blended result
// into `out` (resized to [N, C', result_extent(H), result_extent(W)]).
// fn: ConstTensorView<T> [N, C, h, w] -> ConstTensorView<T> [N, C', out_extent(h), out_extent(w)],
// a view that stays valid until fn is called again (it is copied at once).
template <Scalar T, class TileFn>
void tiled_map(ConstTensorView<T> in, const TileGeometry& g, TileFn&& fn, Tensor<T>& out) {
  require(in.rank() == 4, "tiled_map: expected [N, C, H, W], got ", in.shape().str());
  const index_t N = in.dim(0), C = in.dim(1), H = in.dim(2), W = in.dim(3);
  const index_t e = g.blend;
  Tensor<T> tile_in, cur, left;
  std::vector<Tensor<T>> above;  // per tile column: the last rows of the blended tile above
  index_t out_y = 0, Cout = -1;
  for (index_t i = 0; i < H; i += g.stride) {
    const index_t th = std::min(g.tile, H - i);
    index_t out_x = 0;
    for (index_t j = 0, col = 0; j < W; j += g.stride, ++col) {
      const index_t tw = std::min(g.tile, W - j);
      tile_in.resize({N, C, th, tw});
      for (index_t n = 0; n < N; ++n)
        for (index_t c = 0; c < C; ++c)
          for (index_t y = 0; y < th; ++y)
            std::copy_n(&in.at(n, c, i + y, j), tw, &tile_in.at(n, c, y, 0));
      const ConstTensorView<T> r = fn(tile_in.cview());
      const index_t oh = g.out_extent(th), ow = g.out_extent(tw);
      require(r.rank() == 4 && r.dim(0) == N && r.dim(2) == oh && r.dim(3) == ow,
              "tiled_map: a tile of ", Shape{N, C, th, tw}.str(), " gave ", r.shape().str(), ", expected [", N,
              ", C, ", oh, ", ", ow, "]");
      if (Cout < 0) {
        Cout = r.dim(1);
        out.resize({N, Cout, g.result_extent(H), g.result_extent(W)});
      }
      require(r.dim(1) == Cout, "tiled_map: tiles with ", Cout, " and ", r.dim(1), " channels");
      cur.resize(r.shape());
      std::copy(r.begin(), r.end(), cur.begin());
      if (i > 0) {  // blend_v with the (blended) tile above: its last rows are kept in above[col]
        const Tensor<T>& a = above[static_cast<std::size_t>(col)];
        const index_t ev = std::min({a.dim(2), oh, e}), ah = a.dim(2);
        for (index_t y = 0; y < ev; ++y) {
          const double w = static_cast<double>(y) / static_cast<double>(ev);
          const T wa = static_cast<T>(1 - w), wb = static_cast<T>(w);
          for (index_t n = 0; n < N; ++n)
            for (index_t c = 0; c < Cout; ++c) {
              const T* pa = &a.at(n, c, ah - ev + y, 0);
              T* pb = &cur.at(n, c, y, 0);
              for (index_t x = 0; x < ow; ++x) pb[x] = blend_value(pa[x], wa, pb[x], wb);
            }
        }
      }
      if (j > 0) {  // blend_h with the (blended) tile to the left: its last columns are in `left`
        const index_t aw = left.dim(3), eh = std::min({aw, ow, e});
        for (index_t x = 0; x < eh; ++x) {
          const double w = static_cast<double>(x) / static_cast<double>(eh);
          const T wa = static_cast<T>(1 - w), wb = static_cast<T>(w);
          for (index_t n = 0; n < N; ++n)
            for (index_t c = 0; c < Cout; ++c)
              for (index_t y = 0; y < oh; ++y)
                cur.at(n, c, y, x) = blend_value(left.at(n, c, y, aw - eh + x), wa, cur.at(n, c, y, x), wb);
        }
      }
      // Keep what the next tiles blend with: the last rows (for the row below) and columns (for the right).
      if (above.size() <= static_cast<std::size_t>(col)) above.resize(static_cast<std::size_t>(col) + 1);
      const index_t kr = std::min(e, oh), kc = std::min(e, ow);
      Tensor<T>& keep = above[static_cast<std::size_t>(col)];
      keep.resize({N, Cout, kr, ow});
      left.resize({N, Cout, oh, kc});
      for (index_t n = 0; n < N; ++n)
        for (index_t c = 0; c < Cout; ++c) {
          for (index_t y = 0; y < kr; ++y) std::copy_n(&cur.at(n, c, oh - kr + y, 0), ow, &keep.at(n, c, y, 0));
          for (index_t y = 0; y < oh; ++y) std::copy_n(&cur.at(n, c, y, ow - kc), kc, &left.at(n, c, y, 0));
        }
      // The crop tile[:, :, :row_limit, :row_limit] is this tile's part of the result.
      const index_t ch = std::min(g.limit, oh), cw = std::min(g.limit, ow);
      for (index_t n = 0; n < N; ++n)
        for (index_t c = 0; c < Cout; ++c)
          for (index_t y = 0; y < ch; ++y) std::copy_n(&cur.at(n, c, y, 0), cw, &out.at(n, c, out_y + y, out_x));
      out_x += cw;
    }
    out_y += std::min(g.limit, g.out_extent(th));
  }
}

}  // namespace ddpm::nn
