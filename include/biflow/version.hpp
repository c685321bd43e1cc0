#pragma once
// biflow's version (kept equal to project(VERSION) in CMakeLists.txt; a test checks it).
#define BIFLOW_VERSION_MAJOR 0
#define BIFLOW_VERSION_MINOR 3
#define BIFLOW_VERSION_PATCH 0
#define BIFLOW_VERSION_STRING "0.3.0"

namespace biflow {
inline constexpr int version_major = BIFLOW_VERSION_MAJOR;
inline constexpr int version_minor = BIFLOW_VERSION_MINOR;
inline constexpr int version_patch = BIFLOW_VERSION_PATCH;
inline constexpr const char* version_string = BIFLOW_VERSION_STRING;
}  // namespace biflow
