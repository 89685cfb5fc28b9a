#pragma once
// What every layer in nn/ shares: its name prefix (for parameter names and
// error messages), its mode, shape checks that name the layer, and output
// buffers that are resized only when a shape changes.
#include <string>
#include <utility>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/module.hpp"

namespace ddpm::nn {

// "<prefix>.<name>", or just "<name>" for a layer with an empty prefix.
inline std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Resizes a layer-owned buffer only when the shape changes (Tensor::resize
// keeps the allocation when it is large enough, so steady state allocates nothing).
template <class T, class M>
void ensure_shape(Tensor<T, M>& buffer, const Shape& shape) {
  if (!(buffer.shape() == shape)) buffer.resize(shape);
}

class LayerBase {
 protected:
  // Where a layer writes a result of `shape`: `out` when the caller gives one
  // (checked), else the layer's own `buffer`, resized as needed.
  template <class T, class M>
  TensorView<T, M> output_buffer(Tensor<T, M>& buffer, const Shape& shape, TensorView<T, M> out) const {
    if (out.data() == nullptr) {
      ensure_shape(buffer, shape);
      return buffer.view();
    }
    check_shape("output buffer", out.shape(), shape);
    return out;
  }

 public:
  explicit LayerBase(std::string prefix) : prefix_(std::move(prefix)) {}

  const std::string& prefix() const { return prefix_; }
  Mode mode() const { return mode_; }
  // Composite layers hide this with one that also sets their children
  // (set_mode_recursive, nn/composite.hpp).
  void set_mode(Mode m) { mode_ = m; }

 protected:
  // Throws ddpm::Error "<prefix>: <parts>" unless ok.
  template <class... Parts>
  void check(bool ok, Parts&&... parts) const {
    if (!ok) [[unlikely]]
      fail(prefix_.empty() ? "(unnamed layer)" : prefix_, ": ", std::forward<Parts>(parts)...);
  }
  void check_shape(const char* what, const Shape& actual, const Shape& expected) const {
    check(actual == expected, what, ": expected shape ", expected.str(), ", got ", actual.str());
  }
  // Backward needs a forward in training mode first.
  void check_backward(bool have_forward) const {
    check(mode_ == Mode::Training, "backward called in inference mode");
    check(have_forward, "backward called before forward");
  }

  std::string prefix_;
  Mode mode_ = Mode::Training;
};

}  // namespace ddpm::nn
