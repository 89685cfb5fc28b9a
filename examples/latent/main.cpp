// latent_diffusion: latent diffusion (Rombach et al. 2022) on MNIST-style
// digits with ddpm: an AutoencoderKL maps 28x28 digits to 14x14 latents, a
// class-conditional U-Net learns the latents, the decoder turns sampled
// latents into digits. Subcommands:
//
//   train-autoencoder  train the AutoencoderKL; sets its scaling/shift factors
//   train              train the class-conditional U-Net on its latents
//   sample             a PNG grid (.png) or IDX3 bytes (.idx) of generated digits
//   reconstruct        encode and decode IDX digits; prints the PSNR
//   trajectory         a PNG strip of the decoded latent x_t along the reverse process
//   evaluate           reconstruction PSNR, sample quality, cost against mnist_diffusion
//
// Every subcommand has --help. Without --model, sample/reconstruct/
// trajectory/evaluate use the models shipped in examples/models/latent_mnist.
#include "../common/subcommands.hpp"
#include "commands.hpp"

namespace {

const char* kUsage =
    "usage: latent_diffusion <command> [options]   (latent_diffusion <command> --help for its options)\n"
    "\n"
    "commands:\n"
    "  train-autoencoder  train the AutoencoderKL on IDX digits (28x28 <-> 14x14 latents)\n"
    "  train              train the class-conditional U-Net on the autoencoder's latents\n"
    "  sample             generate digits: a PNG grid (.png) or IDX3 bytes (.idx)\n"
    "  reconstruct        encode and decode IDX digits, print the PSNR\n"
    "  trajectory         a PNG strip of the decoded latent x_t from noise to digit\n"
    "  evaluate           reconstruction PSNR, sample quality, time and flops per sample vs pixel space\n";

}  // namespace

int main(int argc, char** argv) {
  return examples::run_subcommands("latent_diffusion", kUsage, latent::commands(), argc, argv);
}
