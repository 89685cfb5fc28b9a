// A user's program: includes the umbrella header from the installed package.
#include <ddpm/ddpm.hpp>

#include <cstdio>

int main() {
  ddpm::Rng rng(42);
  ddpm::Tensor<float> x({2, 3});
  rng.fill_normal(x.span());
  std::printf("ddpm consumer OK: %g\n", static_cast<double>(x[0]));
  return 0;
}
