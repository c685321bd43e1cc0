#pragma once
// Training progress: a live, rewritten line on a terminal; plain periodic lines when piped (CI logs).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <unistd.h>

namespace biflow {

class Progress {
 public:
  Progress(long total, std::string what = "train", FILE* out = stderr)
      : total_(total), what_(std::move(what)), out_(out), tty_(isatty(fileno(out))),
        start_(std::chrono::steady_clock::now()), last_(start_) {}
  /// Report step (1-based count done) and the current loss; prints at most ~10×/s on a tty, every
  /// total/20 steps otherwise, and always at the end.
  void update(long done, double loss, const std::string& extra = "") {
    const auto now = std::chrono::steady_clock::now();
    const double since = std::chrono::duration<double>(now - last_).count();
    const bool end = done >= total_;
    const long every = std::max<long>(1, total_ / 20);
    if (!end && (tty_ ? since < 0.1 : done % every != 0)) return;
    last_ = now;
    const double el = seconds();
    const double rate = el > 0 ? double(done) / el : 0;
    const double eta = rate > 0 ? double(total_ - done) / rate : 0;
    std::fprintf(out_, "%s%s %ld/%ld  loss %.4f  %.1f steps/s  ETA %.0fs%s%s%s", tty_ ? "\r\033[K" : "",
                 what_.c_str(), done, total_, loss, rate, eta, extra.empty() ? "" : "  ", extra.c_str(),
                 tty_ && !end ? "" : "\n");
    std::fflush(out_);
  }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  long total_;
  std::string what_;
  FILE* out_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace biflow
