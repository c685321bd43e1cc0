// libFuzzer target: the CSV reader on arbitrary text.
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include <biflow/data/csv.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  try {
    std::vector<std::string> header;
    (void)biflow::data::parse_csv(in, "fuzz", &header);
  } catch (const biflow::error&) {
  }
  return 0;
}
