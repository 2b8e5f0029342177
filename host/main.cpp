// trainer: the loom command-line program. Everything happens in cli/.
#include "cli/cli.hpp"

int main(int argc, char** argv) { return loom::run_cli(argc, argv); }
