// A user's program: includes the umbrella header from the installed package
// and uses the optional io/ parts (JSON, zlib and stb are found through the
// package's config).
#include <ddpm/ddpm.hpp>
#include <ddpm/io/idx.hpp>
#include <ddpm/io/image.hpp>

#include <cstdio>
#include <filesystem>

int main() {
  ddpm::Rng rng(42);
  ddpm::Tensor<float> x({2, 1, 4, 4});
  rng.fill_uniform(x.span(), -1.0, 1.0);
  const auto dir = std::filesystem::temp_directory_path();
  ddpm::io::write_png(dir / "ddpm_consumer.png", ddpm::io::make_grid<float>(x, 2));
  ddpm::io::write_idx_images<float>(dir / "ddpm_consumer.idx", x);
  const auto back = ddpm::io::read_idx(dir / "ddpm_consumer.idx");
  std::printf("ddpm consumer OK: %zu bytes round-tripped\n", back.data.size());
  return back.data.size() == 32 ? 0 : 1;
}
