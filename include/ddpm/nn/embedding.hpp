#pragma once
// nn.Embedding(num_embeddings, embedding_dim): integer labels -> rows of the
// table. Parameter: "<prefix>.weight" [num_embeddings, embedding_dim] (init N(0, 1)).
// The labels are not differentiable: backward only accumulates the table's gradient.
#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/nn/init.hpp"
#include "ddpm/nn/layer_base.hpp"
#include "ddpm/core/parameters.hpp"

namespace ddpm::nn {

template <Scalar T, backend::Backend B>
class Embedding : public LayerBase {
 public:
  using M = typename B::memory_space;
  using Buffer = Tensor<T, M>;

  Embedding(Parameters<T, M>& params, const std::string& prefix, index_t num_embeddings, index_t embedding_dim)
      : LayerBase(prefix), params_(&params), num_(num_embeddings), dim_(embedding_dim) {
    check(num_embeddings > 0 && embedding_dim > 0, "num_embeddings and embedding_dim must be > 0, got ",
          num_embeddings, " and ", embedding_dim);
    weight_ = params.add(join_name(prefix, "weight"), {num_embeddings, embedding_dim});
  }

  // labels[N] -> [N, dim]. A label outside [0, num_embeddings) throws ddpm::Error.
  ConstTensorView<T, M> forward(std::span<const std::int64_t> labels) {
    const auto n = static_cast<index_t>(labels.size());
    for (index_t i = 0; i < n; ++i) {
      const std::int64_t l = labels[static_cast<std::size_t>(i)];
      check(l >= 0 && l < num_, "label ", l, " (batch element ", i, ") is outside [0, ", num_, ")");
    }
    ensure_shape(y_, {n, dim_});
    labels_.assign(labels.begin(), labels.end());  // kept for backward
    B::run(ops::embedding_forward, std::as_const(*params_).value(weight_), labels, y_.view());
    have_forward_ = mode_ == Mode::Training;
    return y_.view();
  }

  // dy: [N, dim]. Accumulates dy's rows into the gradient rows of their labels.
  void backward(ConstTensorView<T, M> dy) {
    check_backward(have_forward_);
    check_shape("output gradient", dy.shape(), y_.shape());
    B::run(ops::embedding_backward, std::span<const std::int64_t>(labels_), dy, params_->grad(weight_));
  }

  void init(Rng& rng) { init_normal<B>(params_->value(weight_), rng); }

  index_t num_embeddings() const { return num_; }
  index_t embedding_dim() const { return dim_; }
  ParamId weight_id() const { return weight_; }

 private:
  Parameters<T, M>* params_;
  index_t num_, dim_;
  ParamId weight_ = -1;
  std::vector<std::int64_t> labels_;
  bool have_forward_ = false;
  Buffer y_;
};

}  // namespace ddpm::nn
