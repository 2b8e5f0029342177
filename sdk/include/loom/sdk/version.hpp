// The SDK's ABI version. A plugin records the version it was compiled against in the
// handshake record (see plugin.hpp, LOOM_PLUGIN); the host refuses a different major
// version and a newer minor version than its own.
//
// Rules for changing the SDK (see docs/writing-a-plugin.md, "Versioning"):
//  - adding a virtual hook at the *end* of loom::sdk::Plugin, or a field at the end of a
//    struct the host creates, bumps the minor version;
//  - anything else that changes a layout or a signature bumps the major version.
#pragma once

#define LOOM_SDK_ABI_MAJOR 1
#define LOOM_SDK_ABI_MINOR 1

namespace loom::sdk {
inline constexpr int kAbiMajor = LOOM_SDK_ABI_MAJOR;
inline constexpr int kAbiMinor = LOOM_SDK_ABI_MINOR;
}  // namespace loom::sdk
