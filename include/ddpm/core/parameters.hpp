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
#include <algorithm>
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

template <Scalar T>
class Parameters {
 public:
  // Registers a parameter (zero-initialised). Names must be unique.
  ParamId add(const std::string& name, Shape shape) {
    require(!by_name_.count(name), "Parameters: '", name, "' registered twice");
    ParamInfo p{name, shape, static_cast<index_t>(values_.size())};
    values_.resize(values_.size() + static_cast<std::size_t>(shape.numel()), T{});
    grads_.resize(values_.size(), T{});
    by_name_[name] = static_cast<ParamId>(infos_.size());
    infos_.push_back(std::move(p));
    return static_cast<ParamId>(infos_.size() - 1);
  }

  TensorView<T> value(ParamId id) { return {values_.data() + info(id).offset, info(id).shape}; }
  ConstTensorView<T> value(ParamId id) const { return {values_.data() + info(id).offset, info(id).shape}; }
  TensorView<T> grad(ParamId id) { return {grads_.data() + info(id).offset, info(id).shape}; }
  ConstTensorView<T> grad(ParamId id) const { return {grads_.data() + info(id).offset, info(id).shape}; }

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
  std::span<T> values() { return values_; }
  std::span<const T> values() const { return values_; }
  std::span<T> grads() { return grads_; }
  std::span<const T> grads() const { return grads_; }
  index_t numel() const { return static_cast<index_t>(values_.size()); }

  void zero_grad() { std::fill(grads_.begin(), grads_.end(), T{}); }

 private:
  std::vector<ParamInfo> infos_;
  std::map<std::string, ParamId> by_name_;
  std::vector<T, AlignedAllocator<T>> values_, grads_;
};

}  // namespace ddpm
