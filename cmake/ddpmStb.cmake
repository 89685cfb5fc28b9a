# Finds Debian's libstb-dev (headers in <include>/stb, compiled as libstb) and
# defines the imported target ddpm_stb. Used by the build and by the installed
# package config.
if(NOT TARGET ddpm_stb)
  find_path(DDPM_STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb)
  find_library(DDPM_STB_LIBRARY stb)
  if(DDPM_STB_INCLUDE_DIR AND DDPM_STB_LIBRARY)
    add_library(ddpm_stb INTERFACE IMPORTED)
    set_target_properties(ddpm_stb PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${DDPM_STB_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${DDPM_STB_LIBRARY}")
  endif()
endif()
if(TARGET ddpm_stb)
  set(DDPM_STB_FOUND TRUE)
else()
  set(DDPM_STB_FOUND FALSE)
endif()
