// libFuzzer target: the .npy reader on arbitrary bytes (data limit 1 MiB so huge shapes are refused, not allocated).
#include <cstdint>
#include <string_view>

#include <biflow/data/finite.hpp>
#include <biflow/io/npy.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const biflow::io::NpyArray a =
        biflow::io::parse_npy(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz", 1u << 20);
    biflow::data::require_finite(a.data, "fuzz");
  } catch (const biflow::error&) {
  }
  return 0;
}
