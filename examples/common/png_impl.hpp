#pragma once
// Include in exactly one translation unit per example (holds stb's implementation). Without stb (Debian:
// libstb-dev) the examples still build and write the same picture as a binary PPM next to the requested path.
#include "png.hpp"
#if __has_include(<stb/stb_image_write.h>)
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

void examples::write_png(const std::string& path, const Image& img) {
  if (!stbi_write_png(path.c_str(), img.w, img.h, 3, img.rgb.data(), img.w * 3))
    throw biflow::io_error("write_png: cannot write '" + path + "'");
}
#else
#include <cstdio>
#include <fstream>

void examples::write_png(const std::string& path, const Image& img) {
  const std::string ppm = (path.size() > 4 && path.substr(path.size() - 4) == ".png" ? path.substr(0, path.size() - 4)
                                                                                      : path) + ".ppm";
  std::ofstream f(ppm, std::ios::binary);
  f << "P6\n" << img.w << " " << img.h << "\n255\n";
  f.write(reinterpret_cast<const char*>(img.rgb.data()), std::streamsize(img.rgb.size()));
  if (!f) throw biflow::io_error("write_png: cannot write '" + ppm + "'");
  std::fprintf(stderr, "note: built without stb_image_write (libstb-dev): wrote %s instead of %s\n", ppm.c_str(),
               path.c_str());
}
#endif
