// libFuzzer target: the safetensors reader on arbitrary bytes. Any outcome but a value or a biflow::error
// (a crash, a sanitizer report, another exception, a hang) is a bug.
#include <cstdint>
#include <string_view>

#include <biflow/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const biflow::io::SafeTensorsFile f =
        biflow::io::parse_safetensors(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz", 1u << 20);
    for (const auto& [name, e] : f.header.tensors) (void)f.values<float>(name);  // every tensor converts
  } catch (const biflow::error&) {
  }
  return 0;
}
