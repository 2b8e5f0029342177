// `trainer report`: one self-contained HTML page about a run (inline SVG and CSS; no script,
// no external asset): the curves of metrics.jsonl, the samples over training with their fills
// coloured, the config, the checkpoints and the final numbers.
#pragma once

#include <string>
#include <vector>

#include "report/run_history.hpp"

namespace loom {

std::string render_run_report(const RunHistory& run);

// One piece of a generated sample's text: the sampler's fills, coloured by whether they equal
// the original at the same place.
struct FillPiece {
  enum class Kind { Kept, Correct, Wrong, Fill };  // Fill: no original to compare with
  Kind kind;
  std::string text;
};

// Splits `generated` into the text kept from `masked` (each mask shown there as [MASK]) and the
// text filled in for each run of masks, and compares each fill with the original, character by
// character where the lengths agree (samples.jsonl holds decoded text, not tokens). Empty when
// the texts cannot be aligned (a fill that decodes into its neighbours, say).
std::vector<FillPiece> fill_pieces(const std::string& masked, const std::string& generated,
                                   const std::string& original, bool has_reference);

}  // namespace loom
