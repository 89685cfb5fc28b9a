#pragma once
// ddpm: header-only denoising diffusion models. The umbrella header.
//
// Includes everything except optional parts: distributed/ (MPI) is never
// included here; the io/ readers and writers are included when their
// dependency is available (nlohmann_json for JSON and safetensors, zlib for
// IDX, stb for images), which the ddpm::ddpm CMake target arranges.

// core: tensors, errors, random numbers, threads, the model contract
#include "ddpm/core/error.hpp"
#include "ddpm/core/model.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/random.hpp"
#include "ddpm/core/tensor.hpp"
#include "ddpm/core/thread_pool.hpp"

// diffusion math: schedules, forward process, predictions, timesteps
#include "ddpm/diffusion/forward_process.hpp"
#include "ddpm/diffusion/numerics.hpp"
#include "ddpm/diffusion/prediction.hpp"
#include "ddpm/diffusion/schedule.hpp"
#include "ddpm/diffusion/sigmas.hpp"
#include "ddpm/diffusion/thresholding.hpp"
#include "ddpm/diffusion/timesteps.hpp"

// compute backends
#include "ddpm/backend/backend.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/backend/cpu.hpp"

// neural-network layers and models
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/attention.hpp"
#include "ddpm/nn/autoencoder_blocks.hpp"
#include "ddpm/nn/autoencoder_coders.hpp"
#include "ddpm/nn/autoencoder_config.hpp"
#include "ddpm/nn/autoencoder_kl.hpp"
#include "ddpm/nn/concat.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/diagonal_gaussian.hpp"
#include "ddpm/nn/downsample.hpp"
#include "ddpm/nn/dropout.hpp"
#include "ddpm/nn/embedding.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "ddpm/nn/init.hpp"
#include "ddpm/nn/layer_base.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/mlp_denoiser.hpp"
#include "ddpm/nn/module.hpp"
#include "ddpm/nn/numerics.hpp"
#include "ddpm/nn/resnet_block.hpp"
#include "ddpm/nn/tiled.hpp"
#include "ddpm/nn/timestep_embedding.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "ddpm/nn/unet2d_config.hpp"
#include "ddpm/nn/unet_blocks.hpp"
#include "ddpm/nn/upsample.hpp"
#include "ddpm/nn/vector_quantizer.hpp"
#include "ddpm/nn/vq_model.hpp"

// samplers and the sampling loop
#include "ddpm/sampling/any_sampler.hpp"
#include "ddpm/sampling/ddim.hpp"
#include "ddpm/sampling/ddpm.hpp"
#include "ddpm/sampling/dpm_solver.hpp"
#include "ddpm/sampling/euler.hpp"
#include "ddpm/sampling/guidance.hpp"
#include "ddpm/sampling/inpaint.hpp"
#include "ddpm/sampling/inversion.hpp"
#include "ddpm/sampling/langevin.hpp"
#include "ddpm/sampling/loop.hpp"
#include "ddpm/sampling/predictor_corrector.hpp"
#include "ddpm/sampling/sampler.hpp"
#include "ddpm/sampling/score_sde_ve.hpp"
#include "ddpm/sampling/sdedit.hpp"
#include "ddpm/sampling/translation.hpp"
#include "ddpm/sampling/ve_score.hpp"

// latent diffusion pipelines (LDMPipeline, LDMSuperResolutionPipeline, LatentKLPipeline)
#include "ddpm/pipelines/latent_pipeline.hpp"

// training (checkpoints are written by io/checkpoint.hpp: see the io/ block)
#include "ddpm/train/adam.hpp"
#include "ddpm/train/autoencoder_objective.hpp"
#include "ddpm/train/ema.hpp"
#include "ddpm/train/grad_clip.hpp"
#include "ddpm/train/loss.hpp"
#include "ddpm/train/lr_schedule.hpp"
#include "ddpm/train/objective.hpp"
#include "ddpm/train/trainer.hpp"
#include "ddpm/train/training_loop.hpp"
#include "ddpm/train/training_state.hpp"

#include "ddpm/io/file.hpp"
#if __has_include(<nlohmann/json.hpp>)
#include "ddpm/io/autoencoder.hpp"
#include "ddpm/io/autoencoder_config_json.hpp"
#include "ddpm/io/checkpoint.hpp"
#include "ddpm/io/diffusers.hpp"
#include "ddpm/io/json.hpp"
#include "ddpm/io/mlp_denoiser.hpp"
#include "ddpm/io/model_index.hpp"
#include "ddpm/io/pipeline.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/io/scheduler_config.hpp"
#include "ddpm/io/score_sde_ve_config.hpp"
#include "ddpm/io/state_dict.hpp"
#include "ddpm/io/unet_config_json.hpp"
#endif
#if __has_include(<zlib.h>)
#include "ddpm/io/idx.hpp"
#endif
#if __has_include(<stb_image.h>) && __has_include(<stb_image_write.h>)
#include "ddpm/io/image.hpp"
#endif
