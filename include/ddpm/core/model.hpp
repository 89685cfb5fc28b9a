#pragma once
// The model contract between the layers (nn/) and everything that drives a
// model (sampling/, train/, distributed/, io/): what a denoiser is given
// besides (x_t, t), and the operations a trainable denoiser offers. nn/
// implements it; nothing outside nn/ needs to include nn/ to use a model.
#include <concepts>
#include <cstdint>
#include <span>

#include "ddpm/core/parameters.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm {

// What a denoiser sees besides (x_t, t): class labels (U-Net class
// embeddings, classifier-free guidance) and/or a conditioning vector per
// batch element (the MLP denoiser of the arcsin example). Both optional.
template <Scalar T>
struct Conditioning {
  std::span<const std::int64_t> class_labels;  // [N] or empty
  ConstTensorView<T> vector;                   // [N, C] or empty (data() == nullptr)
};

// A network that maps (x_t, t, condition) to a prediction and back-propagates:
// what the trainer (train/trainer.hpp) and the samplers' model wrappers use.
// forward returns a view of the model's own output buffer; backward takes
// dL/doutput, accumulates parameter gradients and returns dL/dx_t.
template <class M, class T>
concept Denoiser = requires(M& m, ConstTensorView<T> x, std::span<const T> t, const Conditioning<T>& c) {
  { m.parameters() } -> std::same_as<Parameters<T>&>;
  { m.forward(x, t, c) } -> std::convertible_to<ConstTensorView<T>>;
  { m.backward(x) } -> std::convertible_to<ConstTensorView<T>>;
};

}  // namespace ddpm
