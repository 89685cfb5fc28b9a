// nn/ and the training step compute only through the backend: a test backend
// whose memory space is not host memory.
//
// SimDevice is a memory space tag; Tensor<T, SimDevice> keeps its values in
// host RAM (a simulator) but offers NO element access: no operator[], span,
// begin/end, at, fill. TensorView<T, SimDevice> has none either (core/tensor.hpp
// gives element access to host views only). SimBackend runs every op of the
// table by unwrapping its SimDevice views to host views and calling
// backend::Reference; data goes in and out only through ops::copy_from_host
// and ops::copy_to_host. If any code in nn/ or train/ touched tensor elements
// itself, UNet2D<T, SimBackend>, MLPDenoiser<T, SimBackend> or their Trainer
// would not compile. Running them must give Reference's bits exactly.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "ddpm/backend/backend.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/nn/mlp_denoiser.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "ddpm/train/trainer.hpp"
#include "support/tiny_unet.hpp"

namespace ddpm {

struct SimDevice {};

// Device storage: a handle with a shape and a pointer; no element access.
template <class T>
class Tensor<T, SimDevice> {
 public:
  using value_type = T;
  using memory_space = SimDevice;

  Tensor() = default;
  explicit Tensor(Shape shape) : shape_(shape), data_(static_cast<std::size_t>(shape.numel()), T{}) {}

  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  index_t dim(int i) const { return shape_.dim(i); }
  index_t numel() const { return static_cast<index_t>(data_.size()); }
  index_t size() const { return numel(); }
  bool empty() const { return data_.empty(); }
  T* data() { return data_.data(); }
  const T* data() const { return data_.data(); }

  TensorView<T, SimDevice> view() { return {data(), shape_}; }
  ConstTensorView<T, SimDevice> view() const { return {data(), shape_}; }
  ConstTensorView<T, SimDevice> cview() const { return view(); }
  operator TensorView<T, SimDevice>() { return view(); }
  operator ConstTensorView<T, SimDevice>() const { return view(); }

  // Keeps the first elements, zero-fills new ones (what Parameters needs).
  void resize(Shape shape) {
    shape_ = shape;
    data_.resize(static_cast<std::size_t>(shape.numel()));
  }

 private:
  Shape shape_;
  std::vector<T> data_;
};

}  // namespace ddpm

using namespace ddpm;

namespace {

// Device views as host views (the simulator's memory is host RAM); every
// other argument as it is.
template <class A>
auto unwrap(A a) {
  if constexpr (std::is_same_v<A, TensorView<float, SimDevice>> || std::is_same_v<A, TensorView<double, SimDevice>> ||
                std::is_same_v<A, TensorView<const float, SimDevice>> ||
                std::is_same_v<A, TensorView<const double, SimDevice>>)
    return TensorView<typename std::remove_pointer_t<decltype(a.data())>, Host>(a.data(), a.shape());
  else
    return a;
}

struct SimBackend : backend::Forwarding<SimBackend, SimDevice> {
  static constexpr std::string_view name() { return "sim-device"; }
  static void set_num_threads(int) {}
  static int num_threads() { return 1; }
  static inline long long transfers = 0;  // copy_to_host / copy_from_host calls

  template <class Op, class... A>
  static decltype(auto) invoke(Op op, A... a) {
    if constexpr (std::is_same_v<Op, ops::copy_to_host_t> || std::is_same_v<Op, ops::copy_from_host_t>) ++transfers;
    return backend::Reference::run(op, unwrap(a)...);
  }
};
static_assert(backend::Backend<SimBackend>);

// What the tests may not do: touch a device tensor's elements.
template <class V>
concept HasElementAccess = requires(V v) { v[0]; } || requires(V v) { v.begin(); } || requires(V v) { v.span(); };
static_assert(!HasElementAccess<Tensor<double, SimDevice>>);
static_assert(!HasElementAccess<TensorView<double, SimDevice>>);
static_assert(!HasElementAccess<ConstTensorView<float, SimDevice>>);
static_assert(HasElementAccess<TensorView<double, Host>>);

template <class T>
Tensor<T, SimDevice> to_device(const Tensor<T>& h) {
  Tensor<T, SimDevice> d(h.shape());
  SimBackend::run(ops::copy_from_host, h.cview(), d.view());
  return d;
}
template <class V>
auto to_host(V d) {
  using T = typename V::value_type;
  Tensor<T> h(d.shape());
  SimBackend::run(ops::copy_to_host, ConstTensorView<T, SimDevice>(d), h.view());
  return h;
}

template <class T>
bool identical(const Tensor<T>& a, std::type_identity_t<ConstTensorView<T>> b) {
  return a.shape() == b.shape() && std::equal(a.begin(), a.end(), b.begin());
}

template <class T>
Tensor<T> random_tensor(Shape s, std::uint64_t seed) {
  Tensor<T> t(s);
  Rng rng(seed);
  rng.fill_normal(t.span());
  return t;
}

nn::UNet2DConfig tiny_unet(bool scale_shift) {
  nn::UNet2DConfig c = ddpm::test::tiny_unet_layout();
  c.center_input_sample = scale_shift;
  c.resnet_time_scale_shift = scale_shift ? "scale_shift" : "default";
  c.num_class_embeds = 3;
  return c;
}

}  // namespace

TEST_CASE("device space: UNet2D forward and backward equal Reference bit for bit", "[backend]") {
  for (bool scale_shift : {false, true}) {
    for (auto numerics : {nn::Numerics::Diffusers, nn::Numerics::Exact}) {
      INFO("scale_shift " << scale_shift << ", diffusers numerics " << (numerics == nn::Numerics::Diffusers));
      nn::UNet2D<double, backend::Reference> host(tiny_unet(scale_shift), numerics);
      nn::UNet2D<double, SimBackend> dev(tiny_unet(scale_shift), numerics);
      Rng r1(7), r2(7);
      host.init(r1);
      dev.init(r2);
      REQUIRE(identical(to_host(dev.parameters().value_buffer()), host.parameters().value_buffer()));

      const auto x = random_tensor<double>({2, 2, 8, 8}, 1), dout = random_tensor<double>({2, 2, 8, 8}, 2);
      const std::vector<double> t{3.0, 250.5};
      const std::vector<std::int64_t> labels{2, 0};
      const auto xd = to_device(x), doutd = to_device(dout);
      const auto yh = host.forward(x, std::span<const double>(t), labels);
      const auto yd = dev.forward(xd, std::span<const double>(t), labels);
      CHECK(identical(to_host(yd), yh));

      host.parameters().zero_grad();
      SimBackend::run(ops::fill, 0.0, dev.parameters().grad_buffer());
      const auto dxh = host.backward(dout);
      const auto dxd = dev.backward(doutd);
      CHECK(identical(to_host(dxd), dxh));
      CHECK(identical(to_host(dev.parameters().grad_buffer()), host.parameters().grad_buffer()));
      // The gradients are not all zero (the comparison compares something).
      const auto g = to_host(dev.parameters().grad_buffer());
      CHECK(std::count(g.begin(), g.end(), 0.0) < g.numel() / 4);
    }
  }
}

TEST_CASE("device space: MLPDenoiser forward and backward equal Reference bit for bit", "[backend]") {
  for (auto mode : {nn::CondMode::Concat, nn::CondMode::Add}) {
    nn::MLPDenoiserConfig c;
    c.data_dim = 3;
    c.cond_dim = 2;
    c.cond_mode = mode;
    c.hidden = 16;
    c.depth = 2;
    c.time_embed_dim = 8;
    nn::MLPDenoiser<double, backend::Reference> host(c);
    nn::MLPDenoiser<double, SimBackend> dev(c);
    Rng r1(3), r2(3);
    host.init(r1);
    dev.init(r2);
    const auto x = random_tensor<double>({5, 3}, 4), cond = random_tensor<double>({5, 2}, 5);
    const auto dy = random_tensor<double>({5, 3}, 6);
    const std::vector<double> t{0, 1, 2.5, 40, 999};
    const auto xd = to_device(x), condd = to_device(cond), dyd = to_device(dy);
    CHECK(identical(to_host(dev.forward(xd, std::span<const double>(t), condd)),
                    host.forward(x, std::span<const double>(t), cond)));
    CHECK(identical(to_host(dev.backward(dyd)), host.backward(dy)));
    CHECK(identical(to_host(dev.cond_grad()), host.cond_grad()));
    CHECK(identical(to_host(dev.parameters().grad_buffer()), host.parameters().grad_buffer()));
  }
}

TEST_CASE("device space: training steps equal Reference bit for bit", "[backend]") {
  NoiseSchedule<double> schedule({.num_train_timesteps = 100});
  SECTION("UNet2D, epsilon target, class labels with dropout") {
    train::TrainConfig tc;
    tc.lr.base_lr = 1e-3;
    tc.seed = 11;
    tc.label_dropout = 0.5;
    tc.null_label = 2;
    tc.grad_clip_norm = 0.5;  // clips
    nn::UNet2D<double, backend::Reference> host(tiny_unet(true));
    nn::UNet2D<double, SimBackend> dev(tiny_unet(true));
    Rng r1(9), r2(9);
    host.init(r1);
    dev.init(r2);
    train::Trainer<double, nn::UNet2D<double, backend::Reference>> th(host, schedule, tc);
    train::Trainer<double, nn::UNet2D<double, SimBackend>> td(dev, schedule, tc);
    const auto x0 = random_tensor<double>({2, 2, 8, 8}, 12);
    const auto x0d = to_device(x0);
    const std::vector<std::int64_t> labels{0, 1};
    for (int step = 0; step < 2; ++step) {
      const auto sh = th.step(x0, {labels, {}});
      const auto sd = td.step(x0d, {labels, {}});
      CHECK(sh.loss == sd.loss);
      CHECK(sh.grad_norm == sd.grad_norm);
      CHECK(sh.grad_norm > tc.grad_clip_norm);
    }
    CHECK(identical(to_host(dev.parameters().value_buffer()), host.parameters().value_buffer()));
    CHECK(identical(to_host(td.optimizer().exp_avg_sq_buffer()), th.optimizer().exp_avg_sq_buffer()));
    CHECK(identical(to_host(td.ema()->weights_buffer()), th.ema()->weights_buffer()));
  }
  SECTION("MLPDenoiser, v target, min-SNR weights") {
    train::TrainConfig tc;
    tc.prediction_type = PredictionType::v_prediction;
    tc.min_snr_gamma = 5;
    tc.adam = train::AdamConfig::adamw(1e-3);
    tc.lr.base_lr = 1e-3;
    nn::MLPDenoiserConfig c;
    c.data_dim = 2;
    c.hidden = 8;
    c.depth = 2;
    c.time_embed_dim = 4;
    nn::MLPDenoiser<double, backend::Reference> host(c);
    nn::MLPDenoiser<double, SimBackend> dev(c);
    Rng r1(1), r2(1);
    host.init(r1);
    dev.init(r2);
    train::Trainer<double, nn::MLPDenoiser<double, backend::Reference>> th(host, schedule, tc);
    train::Trainer<double, nn::MLPDenoiser<double, SimBackend>> td(dev, schedule, tc);
    const auto x0 = random_tensor<double>({6, 2}, 13);
    const auto x0d = to_device(x0);
    for (int step = 0; step < 3; ++step) CHECK(th.step(x0).loss == td.step(x0d).loss);
    CHECK(identical(to_host(dev.parameters().value_buffer()), host.parameters().value_buffer()));
  }
  SECTION("a non-finite gradient names its parameter") {
    nn::MLPDenoiserConfig c;
    c.data_dim = 2;
    c.hidden = 4;
    c.depth = 1;
    c.time_embed_dim = 4;
    nn::MLPDenoiser<double, SimBackend> dev(c);
    Rng rng(1);
    dev.init(rng);
    train::Trainer<double, nn::MLPDenoiser<double, SimBackend>> td(dev, schedule, {});
    Tensor<double> x0({2, 2}, 1e300);
    CHECK_THROWS_WITH(td.step(to_device(x0)), Catch::Contains("training step 0"));
  }
  CHECK(SimBackend::transfers > 0);
}
