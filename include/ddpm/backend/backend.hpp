#pragma once
// The compute-backend contract.
//
// A backend is a type with static member functions: the heavy operations of
// a diffusion network (GEMM, convolution, GroupNorm, SiLU, upsampling,
// attention), forward and backward. Layers in nn/ are written once against
// this contract and instantiated per backend:
//
//   backend::Reference  plain loops; the definition of what each op computes
//   backend::Eigen      the fast CPU path, checked against Reference
//
// Conventions every backend follows:
//   - Tensors are contiguous, row-major; images NCHW.
//   - Outputs are overwritten (=), except parameter gradients (dw, db,
//     dgamma, dbeta), which are ACCUMULATED (+=) so that a layer used twice
//     and a whole model's flat gradient buffer work without extra copies.
//   - An empty view (data() == nullptr) means "absent": no bias, or an input
//     gradient nobody needs (skipping it saves work).
//   - Shapes are validated by the layer that calls the op (nn/), not here.
//
// A GPU backend adds a memory space of its own (memory_space), a Tensor
// specialisation for it (core/tensor.hpp) and these same functions over
// device pointers; nothing in nn/ changes.
#include <concepts>
#include <string_view>

#include "ddpm/core/tensor.hpp"

namespace ddpm::backend {

enum class Trans { No, Yes };

// Zero padding per side (diffusers' downsample_padding = 0 pads only the
// bottom and right) and a common stride.
struct Conv2dParams {
  index_t stride = 1;
  index_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;

  static constexpr Conv2dParams symmetric(index_t stride, index_t pad) { return {stride, pad, pad, pad, pad}; }
  constexpr index_t out_h(index_t h, index_t kh) const { return (h + pad_top + pad_bottom - kh) / stride + 1; }
  constexpr index_t out_w(index_t w, index_t kw) const { return (w + pad_left + pad_right - kw) / stride + 1; }
};

// The operations a backend provides for scalar type T.
template <class B, class T>
concept BackendOps = requires(index_t n, T s, int i, const T* cp, T* p, ConstTensorView<T> x, TensorView<T> y,
                              Conv2dParams cv) {
  // C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, row-major, leading dims given.
  B::gemm(Trans::No, Trans::No, n, n, n, s, cp, n, cp, n, s, p, n);

  // Linear: y[N,out] = x[N,in] * w[out,in]^T + b[out]   (PyTorch's weight layout)
  B::linear_forward(x, x, x, y);
  // (x, w, dy, dx=, dw+=, db+=)
  B::linear_backward(x, x, x, y, y, y);

  // Conv2d: x[N,Ci,H,W], w[Co,Ci,KH,KW], b[Co] -> y[N,Co,OH,OW]
  B::conv2d_forward(x, x, x, cv, y);
  // (x, w, dy, params, dx=, dw+=, db+=)
  B::conv2d_backward(x, x, x, cv, y, y, y);

  // GroupNorm over (C/G, H, W) per (n, g), affine per channel; saves mean, rstd [N*G].
  // (x, groups, eps, gamma, beta, y=, mean=, rstd=)
  B::group_norm_forward(x, i, s, x, x, y, y, y);
  // (x, groups, gamma, mean, rstd, dy, dx=, dgamma+=, dbeta+=)
  B::group_norm_backward(x, i, x, x, x, x, y, y, y);
  // SiLU(GroupNorm(x)) fused (the pre-activation before every U-Net conv):
  // forward as group_norm_forward with y = silu(group_norm(x)); backward
  // recomputes the normalised values from x and the saved mean/rstd.
  B::group_norm_silu_forward(x, i, s, x, x, y, y, y);
  // (x, groups, gamma, beta, mean, rstd, dy, dx=, dgamma+=, dbeta+=)
  B::group_norm_silu_backward(x, i, x, x, x, x, x, y, y, y);

  // SiLU: y = x * sigmoid(x). backward: (x, dy, dx=)
  B::silu_forward(x, y);
  B::silu_backward(x, x, y);

  // Nearest-neighbour 2x upsampling of NCHW; backward sums each 2x2 block.
  B::upsample_nearest2x_forward(x, y);
  B::upsample_nearest2x_backward(x, y);

  // The glue between layers (residual connections, the time-embedding
  // broadcast, NCHW <-> token-major). Each output may alias an input of the
  // same shape.
  // y = alpha * (a + b); b may be empty (y = alpha * a).
  B::add(x, x, s, y);
  // y[n, c, ...] = x[n, c, ...] + e[n, c] for x [N, C, ...], e [N, C].
  B::add_channel_bias(x, x, y);
  // y[n, c] = sum of x[n, c, ...] for x [N, C, ...].
  B::channel_sum(x, y);
  // x viewed as [n, a, b] -> y [n, b, a] (no aliasing).
  B::transpose(x, n, n, n, y);
  // The U-Net's skip concatenation: y[m] = [a[m], b[m]] for a [N, Ca, ...],
  // b [N, Cb, ...] (same N and trailing dims), y [N, Ca + Cb, ...]; and its
  // inverse, a[m] = y[m, :Ca], b[m] = y[m, Ca:] (Ca = a.dim(1)). No aliasing.
  B::concat_channels(x, x, y);
  B::split_channels(x, y, y);

  // Multi-head scaled dot-product self-attention on token-major data.
  // q, k, v, out: [N, L, C] with C = heads * d (head h owns channels h*d..h*d+d-1).
  // probs: [N, heads, L, L], the softmax(q k^T * scale) rows, saved for backward.
  // (q, k, v, heads, scale, out=, probs=)
  B::attention_forward(x, x, x, i, s, y, y);
  // (q, k, v, probs, heads, scale, dout, dq=, dk=, dv=)
  B::attention_backward(x, x, x, x, i, s, x, y, y, y);
};

template <class B>
concept Backend = requires {
  typename B::memory_space;
  { B::name() } -> std::convertible_to<std::string_view>;
  // Threads the backend may use; set at run time (Reference ignores it).
  B::set_num_threads(1);
  { B::num_threads() } -> std::convertible_to<int>;
} && BackendOps<B, float> && BackendOps<B, double>;

}  // namespace ddpm::backend
