#pragma once
// Include in exactly one translation unit per example (holds stb's implementation).
#include "png.hpp"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

void examples::write_png(const std::string& path, const Image& img) {
  if (!stbi_write_png(path.c_str(), img.w, img.h, 3, img.rgb.data(), img.w * 3))
    throw biflow::io_error("write_png: cannot write '" + path + "'");
}
