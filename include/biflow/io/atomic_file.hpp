#pragma once
// Atomic file replacement: write to "<path>.tmp", flush and fsync it, rename it over <path>, fsync the directory.
// A crash at any moment leaves either the old file or the complete new one, never a truncated file.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "../core/errors.hpp"

namespace biflow::io {

namespace atomic_detail {
inline void fsync_path(const std::string& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;  // e.g. a directory that cannot be opened: the data itself is already synced
  ::fsync(fd);
  ::close(fd);
}
}  // namespace atomic_detail

/// write(std::ofstream&) fills the temporary file; throws io_error naming the file when anything fails.
template <class Write>
void write_atomically(const std::string& path, Write&& write) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw io_error(detail::cat("cannot write '", tmp, "'"));
    write(f);
    f.flush();
    if (!f) {
      f.close();
      std::remove(tmp.c_str());
      throw io_error(detail::cat("writing '", tmp, "' failed (disk full?); '", path, "' is unchanged"));
    }
  }
  atomic_detail::fsync_path(tmp, false);
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw io_error(detail::cat("cannot rename '", tmp, "' to '", path, "'"));
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  atomic_detail::fsync_path(dir.empty() ? "." : dir.string(), true);
}

}  // namespace biflow::io
