#pragma once
// Patchify: C x H x W images (rows in C-major "CHW" order, as PyTorch tensors flatten) -> T = (H/p)(W/p)
// tokens of D = C·p² values, tokens in raster order of the patch grid (row of patches by row of patches).
// The order of the D values inside a token is a parameter so weights from other code bases map 1:1:
//   PatchOrder::channel_major  [c][py][px]  (Apple ml-tarflow)
//   PatchOrder::channel_last   [py][px][c]  (STARFlow, most ViT code)
// Patchify is a fixed permutation of the features (log-det 0), so it is a Permutation flow layer.
#include <cstdint>
#include <vector>

#include "permutation.hpp"

namespace biflow {

enum class PatchOrder { channel_major, channel_last };

struct ImageShape {
  long channels = 1, height = 1, width = 1, patch = 1;
  PatchOrder order = PatchOrder::channel_major;
  long tokens() const { return (height / patch) * (width / patch); }
  long token_dim() const { return channels * patch * patch; }
  long features() const { return channels * height * width; }
  void validate() const {
    if (channels <= 0 || height <= 0 || width <= 0 || patch <= 0)
      throw usage_error(detail::cat("ImageShape: sizes must be positive, got C=", channels, " H=", height,
                                    " W=", width, " patch=", patch));
    if (height % patch != 0 || width % patch != 0)
      throw usage_error(detail::cat("ImageShape: patch size ", patch, " does not divide the ", height, "x", width,
                                    " image"));
  }
};

/// perm[j] = index in the CHW image of value j of the patchified row (token j / D, element j % D).
inline std::vector<std::int32_t> patchify_indices(const ImageShape& s) {
  s.validate();
  const long p = s.patch, gw = s.width / p, D = s.token_dim();
  std::vector<std::int32_t> perm(static_cast<std::size_t>(s.features()));
  for (long t = 0; t < s.tokens(); ++t) {
    const long gy = t / gw, gx = t % gw;
    for (long c = 0; c < s.channels; ++c)
      for (long py = 0; py < p; ++py)
        for (long px = 0; px < p; ++px) {
          const long e = s.order == PatchOrder::channel_major ? (c * p + py) * p + px : (py * p + px) * s.channels + c;
          const long src = (c * s.height + gy * p + py) * s.width + gx * p + px;
          perm[static_cast<std::size_t>(t * D + e)] = static_cast<std::int32_t>(src);
        }
  }
  return perm;
}

/// The patchify flow layer (its inverse unpatchifies).
template <Backend B>
Permutation<B> make_patchify(const ImageShape& s) {
  return Permutation<B>(patchify_indices(s));
}

}  // namespace biflow
