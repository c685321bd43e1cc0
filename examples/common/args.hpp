#pragma once
// Tiny --flag value parser for the examples (unknown flags are an error, --help prints usage).
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <stdexcept>
#include <string>

namespace examples {

class Args {
 public:
  Args(int argc, char** argv, std::string usage, std::set<std::string> known, std::set<std::string> switches = {})
      : usage_(std::move(usage)) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::printf("%s\n", usage_.c_str());
        std::exit(0);
      }
      if (a.rfind("--", 0) != 0) fail("unexpected argument '" + a + "'");
      a = a.substr(2);
      if (switches.count(a)) {
        v_[a] = "1";
        continue;
      }
      if (!known.count(a)) fail("unknown option --" + a);
      if (i + 1 >= argc) fail("option --" + a + " needs a value");
      v_[a] = argv[++i];
    }
  }
  bool has(const std::string& k) const { return v_.count(k) > 0; }
  std::string str(const std::string& k, const std::string& def) const { return has(k) ? v_.at(k) : def; }
  long integer(const std::string& k, long def) const {
    if (!has(k)) return def;
    char* end = nullptr;
    const long x = std::strtol(v_.at(k).c_str(), &end, 10);
    if (*end) fail("--" + k + " expects an integer, got '" + v_.at(k) + "'");
    return x;
  }
  double real(const std::string& k, double def) const {
    if (!has(k)) return def;
    char* end = nullptr;
    const double x = std::strtod(v_.at(k).c_str(), &end);
    if (*end) fail("--" + k + " expects a number, got '" + v_.at(k) + "'");
    return x;
  }
  [[noreturn]] void fail(const std::string& msg) const {
    std::fprintf(stderr, "error: %s\n%s\n", msg.c_str(), usage_.c_str());
    std::exit(2);
  }

 private:
  std::string usage_;
  std::map<std::string, std::string> v_;
};

}  // namespace examples
