// The report's pieces: fills found between the kept text and coloured against the original,
// and the run folder reader on a torn metrics.jsonl. Expected pieces worked out by hand.
#include <gtest/gtest.h>

#include "errors.hpp"
#include "report/run_history.hpp"
#include "report/run_report.hpp"
#include "support/files.hpp"

namespace loom {
namespace {

using Kind = FillPiece::Kind;

std::vector<std::pair<Kind, std::string>> flat(const std::vector<FillPiece>& pieces) {
  std::vector<std::pair<Kind, std::string>> out;
  for (const auto& p : pieces) out.emplace_back(p.kind, p.text);
  return out;
}

TEST(RunReport, FillsAreComparedWithTheOriginalCharacterByCharacter) {
  // "ab" and "cd" kept; fills "Xq" (X right, q wrong) and "Z" (right).
  EXPECT_EQ(flat(fill_pieces("ab[MASK][MASK]cd[MASK]", "abXqcdZ", "abXYcdZ", true)),
            (std::vector<std::pair<Kind, std::string>>{{Kind::Kept, "ab"},
                                                       {Kind::Correct, "X"},
                                                       {Kind::Wrong, "q"},
                                                       {Kind::Kept, "cd"},
                                                       {Kind::Correct, "Z"}}));
}

TEST(RunReport, AFillHoldingTheNextKeptTextIsPlacedByItsMaskCount) {
  // Two masks, a kept "e", one mask; the model wrote "e" everywhere. Searching for the kept "e"
  // would find it inside the first fill; one character per mask places it right.
  EXPECT_EQ(flat(fill_pieces("[MASK][MASK]e[MASK]", "eeee", "abed", true)),
            (std::vector<std::pair<Kind, std::string>>{
                {Kind::Wrong, "ee"}, {Kind::Kept, "e"}, {Kind::Wrong, "e"}}));
}

TEST(RunReport, FillsWithoutAnOriginalAndUnalignableTexts) {
  EXPECT_EQ(
      flat(fill_pieces("Once[MASK][MASK]", "Once upon", "Once", false)),
      (std::vector<std::pair<Kind, std::string>>{{Kind::Kept, "Once"}, {Kind::Fill, " upon"}}));
  // A fill of another length than the original's: wrong as a whole.
  EXPECT_EQ(flat(fill_pieces("a[MASK]b", "axyzb", "acb", true)),
            (std::vector<std::pair<Kind, std::string>>{
                {Kind::Kept, "a"}, {Kind::Wrong, "xyz"}, {Kind::Kept, "b"}}));
  EXPECT_TRUE(fill_pieces("ab[MASK]", "xyz", "abc", true).empty());  // kept text not there
}

TEST(RunReport, HistorySkipsATornLineAndNeedsMetrics) {
  test::ScratchDir dir;
  test::write_file(dir / "metrics.jsonl",
                   "{\"step\":1,\"epoch\":0.1,\"train/loss\":2.5,\"train/lr\":0.001}\n"
                   "{\"step\":2,\"epoch\":0.2,\"train/loss\":null,\"train/lr\":0.002}\n"
                   "{\"step\":2,\"eval/loss\":2.25}\n{\"step\":3,\"train/lo");
  const RunHistory h = RunHistory::read(dir.path());
  EXPECT_EQ(h.rows().size(), 3u);
  EXPECT_EQ(h.skipped_lines(), 1);
  EXPECT_EQ(h.series("train/loss"), (std::vector<std::pair<std::int64_t, double>>{{1, 2.5}}));
  EXPECT_EQ(h.series("train/lr").size(), 2u);
  EXPECT_EQ(h.series("eval/loss"), (std::vector<std::pair<std::int64_t, double>>{{2, 2.25}}));
  EXPECT_FALSE(h.finished());
  test::ScratchDir empty;
  EXPECT_THROW(RunHistory::read(empty.path()), UserError);
}

}  // namespace
}  // namespace loom
