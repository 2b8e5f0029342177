// Everything a loom plugin needs: include this one header.
#pragma once

#include "loom/sdk/batch.hpp"
#include "loom/sdk/config.hpp"
#include "loom/sdk/context.hpp"
#include "loom/sdk/model.hpp"
#include "loom/sdk/plugin.hpp"
#include "loom/sdk/tokenizer.hpp"
#include "loom/sdk/version.hpp"
