#include <gtest/gtest.h>

#include "data/data_loader.hpp"
#include "data/dataset_reader.hpp"
#include "data/packed_rows.hpp"
#include "errors.hpp"
#include "support/process.hpp"
#include "tokenizer/byte_tokenizer.hpp"

namespace loom {
namespace {

Document doc(std::vector<std::int64_t> ids, std::vector<std::int64_t> labels = {}) {
  if (labels.empty()) labels = ids;
  return {ids, labels};
}

TEST(PackDocuments, PacksWithSegmentsPositionsAndPadding) {
  // Hand-laid: rows of 5; [1 2] and [3 4 5] share row 0 ... then [6 7 8 9] in row 1.
  auto rows = pack_documents({doc({1, 2}), doc({3, 4, 5}), doc({6, 7, 8, 9})}, 5, true, 0);
  ASSERT_EQ(rows.rows(), 2);
  EXPECT_EQ(rows.ids, (std::vector<std::int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 0}));
  EXPECT_EQ(rows.segments, (std::vector<std::int64_t>{1, 1, 2, 2, 2, 1, 1, 1, 1, 0}));
  EXPECT_EQ(rows.positions, (std::vector<std::int64_t>{0, 1, 0, 1, 2, 0, 1, 2, 3, 0}));
  EXPECT_EQ(rows.labels.back(), sdk::kIgnoreIndex);
}

TEST(PackDocuments, LongTextFillsTheRowAndContinues) {
  PackingStats st;
  auto rows = pack_documents({doc({1, 2}), doc({3, 4, 5, 6, 7, 8})}, 4, true, 0, &st);
  EXPECT_EQ(rows.ids, (std::vector<std::int64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(rows.segments, (std::vector<std::int64_t>{1, 1, 2, 2, 1, 1, 1, 1}));
  EXPECT_EQ(rows.positions, (std::vector<std::int64_t>{0, 1, 0, 1, 0, 1, 2, 3}));
  EXPECT_EQ(st.split_documents, 1);
}

// Evaluation packing (fill_rows = false): a document that fits in a row is never cut to fill the
// rest of another row; it starts a new one. Only a document longer than a row is cut.
TEST(PackDocuments, WithoutRowFillingDocumentsThatFitStayWhole) {
  PackingStats st;
  auto rows = pack_documents({doc({1, 2}), doc({3, 4, 5}), doc({6}), doc({7, 8, 9, 10, 11, 12})}, 4, true,
                             0, &st, /*fill_rows=*/false);
  EXPECT_EQ(rows.ids, (std::vector<std::int64_t>{1, 2, 0, 0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0}));
  EXPECT_EQ(rows.segments, (std::vector<std::int64_t>{1, 1, 0, 0, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 0, 0}));
  EXPECT_EQ(rows.positions, (std::vector<std::int64_t>{0, 1, 0, 0, 0, 1, 2, 0, 0, 1, 2, 3, 0, 1, 0, 0}));
  EXPECT_EQ(st.split_documents, 1);
  // With row filling (training) the second document is cut, and counted as cut.
  PackingStats filled;
  pack_documents({doc({1, 2}), doc({3, 4, 5})}, 4, true, 0, &filled);
  EXPECT_EQ(filled.split_documents, 1);
}

TEST(PackDocuments, InstructionExamplesAreNeverCut) {
  const std::int64_t I = sdk::kIgnoreIndex;
  PackingStats st;
  auto rows = pack_documents({doc({1, 2}), doc({3, 4, 5}, {I, I, 5}), doc({6, 7, 8, 9, 10, 11}, {I, I, 8, 9, 10, 11})},
                             4, true, 0, &st);
  EXPECT_EQ(rows.ids, (std::vector<std::int64_t>{1, 2, 0, 0, 3, 4, 5, 0}));
  EXPECT_EQ(st.dropped_documents, 1);
}

TEST(PackDocuments, WithoutPackingOneDocumentPerRow) {
  auto rows = pack_documents({doc({1, 2}), doc({3})}, 3, false, 9);
  EXPECT_EQ(rows.ids, (std::vector<std::int64_t>{1, 2, 9, 3, 9, 9}));
  EXPECT_EQ(rows.segments, (std::vector<std::int64_t>{1, 1, 0, 1, 0, 0}));
}

TEST(DataLoader, SameGlobalBatchForAnyWorldSizeAndDeterministic) {
  PackedRows rows;
  rows.seq_len = 2;
  for (std::int64_t i = 0; i < 24; ++i) rows.ids.insert(rows.ids.end(), {i, i}), rows.labels.insert(rows.labels.end(), {i, i}),
      rows.segments.insert(rows.segments.end(), {1, 1}), rows.positions.insert(rows.positions.end(), {0, 1});
  DataLoader one(rows, {4, 1, 1, 0}, 5);
  DataLoader r0(rows, {2, 1, 2, 0}, 5), r1(rows, {2, 1, 2, 1}, 5);
  DataLoader acc(rows, {2, 2, 1, 0}, 5);
  ASSERT_EQ(one.windows_per_epoch(), 6);
  for (std::int64_t step : {0, 3, 7}) {  // step 7 is in the second epoch
    auto a = one.window(step)[0];
    auto b = torch::cat({r0.window(step)[0].input_ids, r1.window(step)[0].input_ids});
    auto w = acc.window(step);
    auto c = torch::cat({w[0].input_ids, w[1].input_ids});
    EXPECT_TRUE(torch::equal(a.input_ids, b));
    EXPECT_TRUE(torch::equal(a.input_ids, c));
    EXPECT_TRUE(torch::equal(a.sample_index, torch::cat({r0.window(step)[0].sample_index, r1.window(step)[0].sample_index})));
    EXPECT_TRUE(torch::equal(a.input_ids, DataLoader(rows, {4, 1, 1, 0}, 5).window(step)[0].input_ids));
  }
  // Epochs are shuffled differently, and sample indices never repeat across epochs.
  EXPECT_FALSE(torch::equal(one.window(0)[0].input_ids, one.window(6)[0].input_ids));
  EXPECT_EQ(one.window(6)[0].sample_index.min().item<std::int64_t>(), 24);
}

TEST(DatasetReader, AlpacaPromptTokensAreNotLearned) {
  auto dir = test::fresh_dir("alpaca");
  test::write_file(dir / "a.jsonl", R"({"instruction": "Add", "input": "1 2", "output": "3"})" "\n");
  ByteTokenizer tok;
  auto docs = read_dataset({(dir / "a.jsonl").string(), "alpaca"}, tok);
  ASSERT_EQ(docs.size(), 1u);
  const auto prompt = alpaca_prompt("Add", "1 2");
  const auto& d = docs[0];
  ASSERT_EQ(d.ids.size(), 1 + prompt.size() + 1 + 1);  // BOS + prompt + "3" + EOS
  for (std::size_t i = 0; i <= prompt.size(); ++i) EXPECT_EQ(d.labels[i], sdk::kIgnoreIndex) << i;
  EXPECT_EQ(d.labels[prompt.size() + 1], '3');
  EXPECT_EQ(d.labels.back(), *tok.eos_id());
}

TEST(DatasetReader, ErrorsNameFileLineAndField) {
  auto dir = test::fresh_dir("reader-errors");
  ByteTokenizer tok;
  test::write_file(dir / "x.jsonl", "{\"body\": \"hi\"}\n");
  try {
    read_dataset({(dir / "x.jsonl").string()}, tok);
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("x.jsonl:1: no field \"text\""), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace loom
