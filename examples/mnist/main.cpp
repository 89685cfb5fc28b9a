// mnist_diffusion: class-conditional diffusion on MNIST-style digits with
// ddpm. Subcommands:
//
//   train       train the U-Net (label dropout for guidance, EMA, checkpoints, --resume)
//   sample      a PNG grid (.png) or IDX3 bytes (.idx) of generated digits
//   denoise     add Gaussian noise to test digits and remove it (SDEdit-style)
//   inpaint     mask a region of test digits and fill it (RePaint-style)
//   trajectory  a PNG strip of x_t along the reverse process
//   classifier  train the digit classifier used to measure quality
//   evaluate    conditional accuracy, Frechet distance and denoising PSNR
//   quality     the sampler quality table (every sampler at 5/10/20/50 model evaluations)
//   invert      DDIM-invert digits under their labels and regenerate them (PSNR)
//   translate   redraw digits as another class (DDIM inversion, DDIB)
//   evaluate-edit  invert and translate measured on held-out digits
//
// Every subcommand has --help. Without --model, sample/denoise/inpaint/
// trajectory/evaluate use the model shipped in examples/models/mnist_cond.
#include <cstdio>
#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "../common/cli.hpp"
#include "commands.hpp"

namespace {

const char* kUsage =
    "usage: mnist_diffusion <command> [options]   (mnist_diffusion <command> --help for its options)\n"
    "\n"
    "commands:\n"
    "  train       train the class-conditional U-Net on IDX digits\n"
    "  sample      generate digits: a PNG grid (.png) or IDX3 bytes (.idx)\n"
    "  denoise     noise test digits with sigma, denoise them, print PSNR before/after\n"
    "  inpaint     mask part of test digits and fill it in\n"
    "  trajectory  a PNG strip of x_t from noise to digit\n"
    "  classifier  train the small CNN digit classifier used by evaluate\n"
    "  evaluate    measure the model: conditional accuracy, Frechet distance, denoising PSNR\n"
    "  quality     the sampler quality table: accuracy, Frechet distance and time per sampler and budget\n"
    "  invert      invert digits under their labels with DDIM and regenerate them, print PSNR\n"
    "  translate   redraw digits as class K keeping their style (DDIM inversion)\n"
    "  evaluate-edit  measure invert (PSNR) and translate (classifier, ink mass) on held-out digits\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const std::string program = "mnist_diffusion " + command;
  // cxxopts sees "mnist_diffusion <command>" as the program name.
  std::vector<char*> args{const_cast<char*>(program.c_str())};
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  const int n = static_cast<int>(args.size());
  return examples::run_main(program.c_str(), [&] {
    for (const auto& c : mnist::commands())
      if (command == c.name) return c.run(n, args.data());
    std::fprintf(stderr, "mnist_diffusion: unknown command '%s'\n\n%s", command.c_str(), kUsage);
    return 2;
  });
}
