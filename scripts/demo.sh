#!/usr/bin/env bash
# The main job: set up, build, and train the built-in demo (a tiny model on a corpus shipped in
# configs/data), then sample from it. Outputs go to outputs/ (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build="${LOOM_BUILD_DIR:-build}"
# The demo starts over each time (--overwrite replaces the previous demo run's outputs), unless
# asked to continue it with --resume.
case " $* " in *" --resume"*) "$build/bin/trainer" "$@" ;; *) "$build/bin/trainer" "$@" --overwrite ;; esac
