# libFuzzer targets for the readers that take untrusted files:
#   fuzz_safetensors  io::SafeTensors::from_bytes + every accessor
#   fuzz_unet_config  diffusers config.json -> nn::UNet2DConfig (+ round trip)
#   fuzz_autoencoder_config  AutoencoderKL / VQModel config.json -> their configs (+ round trip)
#   fuzz_model_index  a pipeline's model_index.json -> io::ModelIndex (+ round trip, latent pipeline check)
#   fuzz_idx          io::read_idx (plain and gzip), IDX images and labels
#   fuzz_image        io::load_image (stb_image compiled in, instrumented)
# Clang only (-fsanitize=fuzzer,address,undefined). Build and run:
#   CXX=clang++-14 cmake -S . -B build-fuzz -DDDPM_FUZZ=ON -DDDPM_BUILD_TESTS=OFF -DDDPM_BUILD_EXAMPLES=OFF
#   cmake --build build-fuzz --target ddpm_fuzz
#   build-fuzz/fuzz_safetensors -max_total_time=30 <scratch-dir> tests/fuzz/corpus/safetensors
# cmake/fuzz_smoke.sh does all of that (a 20-second run of each target in CI).
option(DDPM_FUZZ "Build the libFuzzer targets in tests/fuzz (needs clang)" OFF)
if(DDPM_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "DDPM_FUZZ=ON needs clang for -fsanitize=fuzzer (e.g. -DCMAKE_CXX_COMPILER=clang++-14); "
                        "the compiler is ${CMAKE_CXX_COMPILER_ID}")
  endif()
  if(NOT nlohmann_json_FOUND OR NOT ZLIB_FOUND OR NOT DDPM_STB_FOUND)
    message(FATAL_ERROR "DDPM_FUZZ=ON needs nlohmann_json, zlib and stb (libstb-dev) to fuzz every reader")
  endif()
  set(_ddpm_fuzz_dir ${CMAKE_CURRENT_LIST_DIR}/../tests/fuzz)
  add_custom_target(ddpm_fuzz)
  foreach(_t IN ITEMS safetensors unet_config autoencoder_config model_index idx image)
    add_executable(fuzz_${_t} ${_ddpm_fuzz_dir}/fuzz_${_t}.cpp)
    target_link_libraries(fuzz_${_t} PRIVATE ddpm::ddpm)
    target_compile_options(fuzz_${_t} PRIVATE -g -O1 -fno-omit-frame-pointer
      -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Wall -Wextra)
    target_link_options(fuzz_${_t} PRIVATE -fsanitize=fuzzer,address,undefined)
    add_dependencies(ddpm_fuzz fuzz_${_t})
  endforeach()
endif()
