// DDIMScheduler.step against diffusers: every case, float and double.
#include "sampling/golden_steps.hpp"

TEST_CASE("DDIM steps agree with diffusers (every case, float and double)", "[golden][ddim_step]") {
  ddpm::test::check_step_kind("ddim_step");
}
