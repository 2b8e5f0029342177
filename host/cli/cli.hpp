// Command-line entry: parses arguments, dispatches to a command, and turns errors into one
// readable line and a non-zero exit status.
#pragma once

namespace loom {

int run_cli(int argc, char** argv);

}  // namespace loom
