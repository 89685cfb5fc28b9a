#pragma once
// All of a model's parameters, and their gradients, in one flat buffer each,
// with named views. The optimizer, EMA, gradient clipping, checkpoints and a
// data-parallel allreduce are then single passes over contiguous memory.
//
// Part of the model contract (core/model.hpp): nn/ layers fill it, train/
// and distributed/ update it, io/ reads and writes it.
//
// Layers register their parameters while the model is built (`add`), keep
// the returned ParamId, and look up views when they run (`value`, `grad`):
// ids stay valid when the buffer grows, raw pointers would not.
//
// The buffers live in memory space M (the model's backend's). Registration
// happens while the model is built, before any value is written: the buffers
// then grow with Tensor<T, M>::resize, which keeps the elements it has and
// zero-fills the new ones. Element access to the flat buffers (values(),
// grads() as spans, zero_grad) is for host memory; any space has the flat
// views (value_buffer(), grad_buffer()) that backend ops take.
//
// The gradient buffer is allocated (zero-filled, the size of the values) on
// the first access to a gradient, so a model only ever run for inference
// holds no gradients (for a large autoencoder that is as much memory as its
// weights). The first access is not thread-safe: take gradient views from
// one thread, as backward passes do.
#include <algorithm>
#include <concepts>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/tensor.hpp"

namespace ddpm {

struct ParamInfo {
  std::string name;  // diffusers' state_dict key, e.g. "down_blocks.0.resnets.1.conv1.weight"
  Shape shape;
  index_t offset = 0;  // into the flat buffers
  index_t numel() const { return shape.numel(); }
};

using ParamId = int;

template <Scalar T, class M = Host>
class Parameters {
  static constexpr bool kHost = std::same_as<M, Host>;

 public:
  // Registers a parameter (zero-initialised). Names must be unique.
  ParamId add(const std::string& name, Shape shape) {
    require(!by_name_.count(name), "Parameters: '", name, "' registered twice");
    ParamInfo p{name, shape, values_.numel()};
    values_.resize({values_.numel() + shape.numel()});
    by_name_[name] = static_cast<ParamId>(infos_.size());
    infos_.push_back(std::move(p));
    return static_cast<ParamId>(infos_.size() - 1);
  }

  TensorView<T, M> value(ParamId id) { return {values_.data() + info(id).offset, info(id).shape}; }
  ConstTensorView<T, M> value(ParamId id) const { return {values_.data() + info(id).offset, info(id).shape}; }
  TensorView<T, M> grad(ParamId id) { return {gradient_buffer().data() + info(id).offset, info(id).shape}; }
  ConstTensorView<T, M> grad(ParamId id) const { return {gradient_buffer().data() + info(id).offset, info(id).shape}; }

  const ParamInfo& info(ParamId id) const {
    require(id >= 0 && static_cast<std::size_t>(id) < infos_.size(), "Parameters: invalid id ", id);
    return infos_[static_cast<std::size_t>(id)];
  }
  const std::vector<ParamInfo>& infos() const { return infos_; }
  bool contains(const std::string& name) const { return by_name_.count(name) != 0; }
  ParamId id(const std::string& name) const {
    auto it = by_name_.find(name);
    require(it != by_name_.end(), "Parameters: no parameter named '", name, "'");
    return it->second;
  }
  std::size_t count() const { return infos_.size(); }

  // The flat buffers: every parameter / gradient, concatenated in registration order.
  std::span<T> values() requires kHost { return values_.span(); }
  std::span<const T> values() const requires kHost { return values_.span(); }
  std::span<T> grads() requires kHost { return gradient_buffer().span(); }
  std::span<const T> grads() const requires kHost { return gradient_buffer().span(); }
  // The same as flat views [numel] of memory space M.
  TensorView<T, M> value_buffer() { return {values_.data(), {numel()}}; }
  ConstTensorView<T, M> value_buffer() const { return {values_.data(), {numel()}}; }
  TensorView<T, M> grad_buffer() { return {gradient_buffer().data(), {numel()}}; }
  ConstTensorView<T, M> grad_buffer() const { return {gradient_buffer().data(), {numel()}}; }
  index_t numel() const { return values_.numel(); }

  void zero_grad() requires kHost { gradient_buffer().fill(T{}); }

 private:
  // The gradients, allocated (zero) on first use and grown with the values.
  Tensor<T, M>& gradient_buffer() const {
    if (grads_.numel() != values_.numel()) grads_.resize(values_.shape());
    return grads_;
  }

  std::vector<ParamInfo> infos_;
  std::map<std::string, ParamId> by_name_;
  Tensor<T, M> values_{Shape{0}};
  mutable Tensor<T, M> grads_{Shape{0}};
};

}  // namespace ddpm
