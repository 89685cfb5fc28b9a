// DDPMScheduler.step against diffusers: every case, float and double.
#include "sampling/golden_steps.hpp"

TEST_CASE("DDPM steps agree with diffusers (every case, float and double)", "[golden][ddpm_step]") {
  ddpm::test::check_step_kind("ddpm_step");
}
