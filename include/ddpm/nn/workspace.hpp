#pragma once
// Scratch tensors for results that live only inside one call of a composite
// layer: a ResNet block's intermediate activations in inference and its
// intermediate gradients in backward. Without them every sub-layer keeps an
// output and an input-gradient buffer of its own for the life of the model,
// which doubles training memory and spreads the working set over buffers that
// are cold in cache; with them a block's chain a -> b -> c ping-pongs through
// a few buffers shared by every block (the results that must outlive the
// call, the block's output and input gradient, stay in the block).
//
//   TensorView<T> a = workspace<T, M>(0, shape);   // slot 0
//
// Per thread, scalar type and memory space M (a Tensor<T, M> per slot); a slot grows to the largest shape
// asked of it and is never zero-filled. Contract: a view of slot i is valid
// until the next workspace() call for slot i on the same thread, so a layer
// uses a slot only for a value that is dead before it asks for that slot
// again, and never calls another layer that uses that slot while it holds one.
// In forward inference the layers below a block use slots 0 and 1 only, so
// the autoencoder blocks keep their resnets' results in slots 2 and 3
// (autoencoder_blocks.hpp).
#include <array>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::nn {

inline constexpr int kWorkspaceSlots = 6;

template <Scalar T, class M = Host>
TensorView<T, M> workspace(int slot, const Shape& shape) {
  static thread_local std::array<Tensor<T, M>, kWorkspaceSlots> slots;
  require(slot >= 0 && slot < kWorkspaceSlots, "workspace: slot ", slot, " out of range");
  auto& s = slots[static_cast<std::size_t>(slot)];
  const index_t n = shape.numel();
  if (s.empty() || s.numel() < n) {
    s = Tensor<T, M>();  // release first: the peak is the new size, not old + new
    s = Tensor<T, M>(Shape{n});
  }
  return TensorView<T, M>(s.data(), shape);
}

}  // namespace ddpm::nn
