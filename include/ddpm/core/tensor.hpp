#pragma once
// Dense row-major tensors (NCHW for images, [N, F] for vectors).
//
//   Shape            up to kMaxRank extents, stored inline (no allocation).
//   TensorView<T, M> a non-owning, contiguous view of memory space M (Host by
//                    default): pointer + shape. Cheap to copy, used by every
//                    kernel. TensorView<const T, M> is read-only. Only host views
//                    give element access; a view of another space is a handle
//                    that only that space's backend reads.
//   Tensor<T, M>     owns 64-byte aligned storage in memory space M (Host for the
//                    CPU backends; a device backend brings its own space and
//                    storage, see backend/backend.hpp).
#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "ddpm/core/error.hpp"

namespace ddpm {

using index_t = std::ptrdiff_t;

// The scalar types the library is templated on.
template <class T>
concept Scalar = std::same_as<T, float> || std::same_as<T, double>;

class Shape {
 public:
  static constexpr int kMaxRank = 6;

  constexpr Shape() = default;
  constexpr Shape(std::initializer_list<index_t> extents) { assign(extents.begin(), extents.end()); }
  template <class It>
  constexpr Shape(It first, It last) { assign(first, last); }
  explicit Shape(std::span<const index_t> extents) { assign(extents.begin(), extents.end()); }

  constexpr int rank() const { return rank_; }
  constexpr index_t operator[](int i) const { return dims_[static_cast<std::size_t>(i)]; }
  constexpr index_t& operator[](int i) { return dims_[static_cast<std::size_t>(i)]; }
  constexpr index_t numel() const {
    index_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
    return n;
  }
  constexpr const index_t* begin() const { return dims_.data(); }
  constexpr const index_t* end() const { return dims_.data() + rank_; }
  std::vector<index_t> to_vector() const { return {begin(), end()}; }

  // Extent `i` counted from the end when negative (dim(-1) is the last one).
  constexpr index_t dim(int i) const { return (*this)[i < 0 ? rank_ + i : i]; }

  // The shape without its first extent (one batch element).
  constexpr Shape drop_front() const {
    Shape s;
    s.rank_ = rank_ > 0 ? rank_ - 1 : 0;
    for (int i = 0; i < s.rank_; ++i) s.dims_[static_cast<std::size_t>(i)] = dims_[static_cast<std::size_t>(i + 1)];
    return s;
  }

  friend constexpr bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[static_cast<std::size_t>(i)] != b.dims_[static_cast<std::size_t>(i)]) return false;
    return true;
  }

  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(dims_[static_cast<std::size_t>(i)]);
    return s + "]";
  }

 private:
  template <class It>
  constexpr void assign(It first, It last) {
    for (; first != last; ++first) {
      require(rank_ < kMaxRank, "Shape: rank above ", kMaxRank, " is not supported");
      require(*first >= 0, "Shape: extents must be >= 0, got ", static_cast<long long>(*first));
      dims_[static_cast<std::size_t>(rank_++)] = static_cast<index_t>(*first);
    }
  }
  std::array<index_t, kMaxRank> dims_{};
  int rank_ = 0;
};

// Memory spaces. Host memory is plain, 64-byte aligned RAM that both CPU
// backends share; a GPU backend adds its own space (and Tensor specialisation).
struct Host {};

// A contiguous view of memory space M. T may be const-qualified.
template <class T, class M = Host>
class TensorView {
  static constexpr bool kHost = std::same_as<M, Host>;

 public:
  using value_type = std::remove_const_t<T>;
  using memory_space = M;

  TensorView() = default;
  TensorView(T* data, Shape shape) : data_(data), shape_(shape) {}
  // A mutable view converts to a read-only one.
  template <class U>
    requires(std::is_const_v<T> && std::same_as<std::remove_const_t<T>, U>)
  TensorView(TensorView<U, M> v) : data_(v.data()), shape_(v.shape()) {}

  T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  index_t dim(int i) const { return shape_.dim(i); }
  index_t numel() const { return shape_.numel(); }
  index_t size() const { return numel(); }
  bool empty() const { return numel() == 0; }
  // Element access: host memory only.
  std::span<T> span() const requires kHost { return {data_, static_cast<std::size_t>(numel())}; }
  T* begin() const requires kHost { return data_; }
  T* end() const requires kHost { return data_ + numel(); }
  T& operator[](index_t i) const requires kHost { return data_[i]; }

  // Element at a multi-index (debugging and tests; kernels use raw pointers).
  template <class... I>
    requires kHost
  T& at(I... idx) const {
    const index_t ix[] = {static_cast<index_t>(idx)...};
    require(static_cast<int>(sizeof...(I)) == rank(), "TensorView::at: expected ", rank(), " indices, got ",
            sizeof...(I));
    index_t off = 0;
    for (int d = 0; d < rank(); ++d) {
      require(ix[d] >= 0 && ix[d] < shape_[d], "TensorView::at: index ", ix[d], " out of range for dim ", d,
              " of shape ", shape_.str());
      off = off * shape_[d] + ix[d];
    }
    return data_[off];
  }

  // Batch element(s) [first, first + count) along dim 0, as a view.
  TensorView slice(index_t first, index_t count) const {
    require(rank() >= 1 && first >= 0 && count >= 0 && first + count <= shape_[0], "TensorView::slice: [", first,
            ", ", first + count, ") outside dim 0 of ", shape_.str());
    Shape s = shape_;
    s[0] = count;
    return {data_ + first * (numel() / std::max<index_t>(shape_[0], 1)), s};
  }
  TensorView operator()(index_t batch) const { return slice(batch, 1); }

  // Same data, another shape with the same number of elements.
  TensorView reshape(Shape s) const {
    require(s.numel() == numel(), "TensorView::reshape: ", shape_.str(), " has ", numel(), " elements, ", s.str(),
            " needs ", s.numel());
    return {data_, s};
  }

 private:
  T* data_ = nullptr;
  Shape shape_;
};

template <class T, class M = Host>
using ConstTensorView = TensorView<const T, M>;

template <class T, std::size_t Align = 64>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U, Align>&) noexcept {}
  template <class U>
  struct rebind {
    using other = AlignedAllocator<U, Align>;
  };
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{Align}));
  }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{Align}); }
  friend bool operator==(const AlignedAllocator&, const AlignedAllocator&) { return true; }
};

template <class T, class Memory = Host>
class Tensor;

// An owning host tensor. Copies are deep; moves are cheap.
template <class T>
class Tensor<T, Host> {
 public:
  using value_type = T;
  using memory_space = Host;

  Tensor() = default;
  explicit Tensor(Shape shape, T fill = T{}) : shape_(shape), data_(static_cast<std::size_t>(shape.numel()), fill) {}
  Tensor(Shape shape, std::span<const T> values) : shape_(shape), data_(values.begin(), values.end()) {
    require(static_cast<index_t>(values.size()) == shape.numel(), "Tensor: ", values.size(),
            " values given for shape ", shape.str());
  }
  static Tensor zeros(Shape shape) { return Tensor(shape); }
  static Tensor zeros_like(ConstTensorView<T> v) { return Tensor(v.shape()); }
  static Tensor copy_of(ConstTensorView<T> v) { return Tensor(v.shape(), v.span()); }

  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  index_t dim(int i) const { return shape_.dim(i); }
  index_t numel() const { return static_cast<index_t>(data_.size()); }
  index_t size() const { return numel(); }
  bool empty() const { return data_.empty(); }
  T* data() { return data_.data(); }
  const T* data() const { return data_.data(); }
  T* begin() { return data(); }
  T* end() { return data() + numel(); }
  const T* begin() const { return data(); }
  const T* end() const { return data() + numel(); }
  T& operator[](index_t i) { return data_[static_cast<std::size_t>(i)]; }
  const T& operator[](index_t i) const { return data_[static_cast<std::size_t>(i)]; }
  std::span<T> span() { return {data(), data_.size()}; }
  std::span<const T> span() const { return {data(), data_.size()}; }

  TensorView<T> view() { return {data(), shape_}; }
  ConstTensorView<T> view() const { return {data(), shape_}; }
  ConstTensorView<T> cview() const { return view(); }
  operator TensorView<T>() { return view(); }
  operator ConstTensorView<T>() const { return view(); }

  template <class... I>
  T& at(I... idx) { return view().at(idx...); }
  template <class... I>
  const T& at(I... idx) const { return view().at(idx...); }

  // Changes the shape; reuses the allocation when it is large enough, so a
  // workspace resized to the same or a smaller shape never allocates.
  void resize(Shape shape) {
    shape_ = shape;
    data_.resize(static_cast<std::size_t>(shape.numel()));
  }
  void fill(T v) { std::fill(data_.begin(), data_.end(), v); }
  Tensor& reshape(Shape s) {
    require(s.numel() == numel(), "Tensor::reshape: ", shape_.str(), " has ", numel(), " elements, ", s.str(),
            " needs ", s.numel());
    shape_ = s;
    return *this;
  }

  template <class U>
  Tensor<U, Host> cast() const {
    Tensor<U, Host> out(shape_);
    std::transform(begin(), end(), out.begin(), [](T x) { return static_cast<U>(x); });
    return out;
  }

 private:
  Shape shape_;
  std::vector<T, AlignedAllocator<T>> data_;
};

// Throws a ddpm::Error naming `what` unless the two shapes agree.
inline void require_same_shape(const Shape& a, const Shape& b, const char* what) {
  require(a == b, what, ": shapes differ, ", a.str(), " vs ", b.str());
}

}  // namespace ddpm
