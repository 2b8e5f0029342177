// The plugin library's only exported symbols: the handshake record and the factory.
#include "diffusion_plugin.hpp"

LOOM_PLUGIN(loom::diffusion::DiffusionPlugin, "diffusion")
