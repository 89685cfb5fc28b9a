#pragma once
// How layers are written (every header in nn/ follows this):
//
//   template <Scalar T, backend::Backend B>
//   class Conv2d {
//    public:
//     using M = typename B::memory_space;   // every tensor the layer sees lives here
//
//     // Registers "<prefix>.weight" and "<prefix>.bias" in `params` (diffusers'
//     // state_dict names) and keeps a pointer to it; the model owning `params`
//     // holds it by unique_ptr so the pointer survives moves of the model.
//     Conv2d(Parameters<T, M>& params, const std::string& prefix, ...options...);
//
//     // Forward pass. Returns a view of the layer's own output buffer, which is
//     // reused by the next call (no allocation once shapes are steady). In
//     // training mode the layer keeps what backward needs (a view of x, which
//     // the caller keeps alive and unchanged until backward, and any saved
//     // statistics).
//     ConstTensorView<T, M> forward(ConstTensorView<T, M> x);
//
//     // Backward pass for the last forward: ACCUMULATES parameter gradients
//     // into params.grad(...) and returns a view of dL/dx in the layer's own
//     // buffer.
//     ConstTensorView<T, M> backward(ConstTensorView<T, M> dy);
//
//     // PyTorch's default initialisation for this layer type.
//     void init(Rng& rng);
//   };
//
// A layer computes only through B::run(ops::..., ...): it never reads or
// writes tensor elements itself (a device backend's views offer no element
// access; tests/backend/test_device_space.cpp instantiates the models with
// one). Host data by nature stays host: timesteps, class labels.
//
// A layer made of other layers lists them once, in for_each_child, and
// derives init and set_mode from it (nn/composite.hpp).
//
// Layers whose forward takes more than one input (ResNet block: x and the
// time embedding; attention) take them as extra arguments and return their
// extra gradients through accessors. Every layer's backward is checked
// against central finite differences in double (tests/nn/).
#include <concepts>

#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm::nn {

// Training mode keeps activations for backward; inference mode may skip that.
enum class Mode { Training, Inference };

// A single-input layer in the sense above.
template <class L, class T, class M = Host>
concept Layer = requires(L& layer, ConstTensorView<T, M> x, Rng& rng) {
  { layer.forward(x) } -> std::convertible_to<ConstTensorView<T, M>>;
  { layer.backward(x) } -> std::convertible_to<ConstTensorView<T, M>>;
  layer.init(rng);
};

}  // namespace ddpm::nn
