// mnist_diffusion: class-conditional diffusion on MNIST-style digits with
// ddpm. Subcommands:
//
//   train       train the U-Net (label dropout for guidance, EMA, checkpoints, --resume;
//               --time-limit: as many steps as fit; --superres-scales: the super-resolution model)
//   train-curve time to quality: train from scratch per time budget, measure each model
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
//   anomaly     score images by reconstruction error (AnoDDPM); --evaluate: AUROC
//   superres    super-resolve 7x7 / 14x14 digits to 28x28 (image-conditioned model), --degrade, --evaluate
//
// Every subcommand has --help. Without --model, sample/denoise/inpaint/
// trajectory/evaluate use the model shipped in examples/models/mnist_cond,
// superres the one in examples/models/mnist_superres.
#include "../common/subcommands.hpp"
#include "commands.hpp"

namespace {

const char* kUsage =
    "usage: mnist_diffusion <command> [options]   (mnist_diffusion <command> --help for its options)\n"
    "\n"
    "commands:\n"
    "  train       train the class-conditional U-Net on IDX digits (--time-limit: for so many seconds)\n"
    "  train-curve time to quality: a model per time budget (train --time-limit), each measured as evaluate does\n"
    "  sample      generate digits: a PNG grid (.png) or IDX3 bytes (.idx)\n"
    "  denoise     noise test digits with sigma, denoise them, print PSNR before/after\n"
    "  inpaint     mask part of test digits and fill it in\n"
    "  trajectory  a PNG strip of x_t from noise to digit\n"
    "  classifier  train the small CNN digit classifier used by evaluate\n"
    "  evaluate    measure the model: conditional accuracy, Frechet distance, denoising PSNR\n"
    "  quality     the sampler quality table: accuracy, Frechet distance and time per sampler and budget\n"
    "  invert      invert digits under their labels with DDIM and regenerate them, print PSNR\n"
    "  translate   redraw digits as class K keeping their style (DDIM inversion)\n"
    "  evaluate-edit  measure invert (PSNR) and translate (classifier, ink mass) on held-out digits\n"
    "  anomaly     score images by how much the model changes them (AnoDDPM); --evaluate: AUROC\n"
    "  superres    super-resolve 7x7 or 14x14 digits to 28x28 (--degrade makes them, --evaluate measures)\n";

}  // namespace

int main(int argc, char** argv) {
  return examples::run_subcommands("mnist_diffusion", kUsage, mnist::commands(), argc, argv);
}
