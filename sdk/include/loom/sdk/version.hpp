// The SDK's version, MAJOR.MINOR, and the rules that keep plugins working across minors.
//
// A plugin records in its handshake record (plugin.hpp, LOOM_PLUGIN) the minor it was built
// for: LOOM_SDK_TARGET_MINOR, which is this SDK's minor unless the plugin defines it lower
// (before including any loom header) to load into older trainers. The headers then show only
// what that minor has. The host:
//  - refuses another major, and a minor newer than its own (the plugin could call a host
//    method the trainer does not have);
//  - calls a Plugin hook added in minor N only on plugins built for N or later; older plugins
//    get the hook's default behaviour (their vtables have no slot for it).
//
// Rules for changing the SDK (docs/writing-a-plugin.md, "Versioning", has the table of which
// types may grow and which are frozen for the major version):
//  - a virtual hook appended at the end of loom::sdk::Plugin, a virtual method appended at the
//    end of ModelHandle or TokenizerHandle, a field appended at the end of RunInfo,
//    StepContext, TrainerState or PluginAbi: bump the minor, and wrap the addition in
//    `#if LOOM_SDK_TARGET_MINOR >= <new minor>`;
//  - anything else that changes a layout or a signature (and any change to a frozen type)
//    bumps the major.
#pragma once

#define LOOM_SDK_ABI_MAJOR 1
#define LOOM_SDK_ABI_MINOR 4

#ifndef LOOM_SDK_TARGET_MINOR
#define LOOM_SDK_TARGET_MINOR LOOM_SDK_ABI_MINOR
#endif
#if LOOM_SDK_TARGET_MINOR > LOOM_SDK_ABI_MINOR || LOOM_SDK_TARGET_MINOR < 0
#error "LOOM_SDK_TARGET_MINOR must be between 0 and this SDK's minor version (LOOM_SDK_ABI_MINOR)"
#endif

namespace loom::sdk {
inline constexpr int kAbiMajor = LOOM_SDK_ABI_MAJOR;
inline constexpr int kAbiMinor = LOOM_SDK_ABI_MINOR;
// What each minor added (the host gates hooks on these).
inline constexpr int kMinorCrossEntropy = 1;  // ModelHandle::cross_entropy, StepContext::model
inline constexpr int kMinorControlAndLoad = 2;  // Plugin::on_load, TrainerState::should_*,
                                                // ModelHandle::named_parameters/tensor files,
                                                // cross_entropy with excluded ids, PluginAbi::compiler
inline constexpr int kMinorCachedSampling = 3;  // KeyValueCache, ModelHandle::forward_caching/
                                                // forward_cached, Plugin::generate_batch
inline constexpr int kMinorModelsAndServing = 4;  // GenerateObserver, Plugin::request_option_keys/
                                                  // check_request_options/generate_batch_observed
                                                  // (`trainer serve`); ModelHandle::model_type/
                                                  // predicts_next_token/native_mask_token_id
}  // namespace loom::sdk
