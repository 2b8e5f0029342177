// The diffusion objective on the masked positions of a micro-batch (tensors from
// ForwardProcess in Batch::extras). Vocabulary logits are computed only where a masked token
// is predicted. Every normaliser is a window total (StepContext::window) or a quantity local
// to one row or document, so the summed micro-batch losses of an accumulation window give
// exactly the loss -- and the gradient -- of the window as one batch, whatever the
// micro-batch size, accumulation or world size.
//
// Per masked token i with cross-entropy CE_i and mask probability p_i:
//  pretraining document, importance weighting: CE_i / p_i / (R * L)
//      R = window rows, L = sequence length: LLaDA's sum(CE/p) / (B*L).
//  pretraining document, no weighting: CE_i / (m_row * R)
//      m_row = masked pretraining tokens of i's row: the mean CE over masked tokens, taken per
//      row and averaged over the window's rows. (A token-pooled mean would need the window's
//      masked-token count, which WindowTotals does not hold; rows all have length L, so the
//      two differ only by the per-row variation of the masked count.)
//  instruction document (it has a non-special token with label kIgnoreIndex: a prompt),
//  importance weighting: CE_i / p_i / (A_doc * D)
//      A_doc = the document's eligible answer tokens, D = window documents: LLaDA's SFT loss,
//      per sample sum(CE/p)/answer length, then the mean over samples.
//  instruction document, no weighting: CE_i / (m_doc * D), m_doc = masked tokens of the doc.
//
// Evaluation (StepContext::training false): the negative log-likelihood bound per scored token,
// whatever importance_weighting says: sum over masked tokens of CE_i / p_i, divided by the
// micro-batch's eligible tokens E (every token the forward process may mask: labelled,
// non-special, non-padding -- answer tokens only for instruction documents). Its expectation
// over the masks is LLaDA's likelihood bound of those tokens, averaged per token; padding
// never counts. The metric "scored_tokens" (sdk::kScoredTokensMetric) reports E, and the host
// weights eval batches by it, so the reported value is the bound per scored token of the whole
// eval set, however the documents are packed or batched.
//
// Logit shift: token i is predicted from the hidden state at i-1 (same document: the forward
// process never masks a document's first token in this mode).
//
// A micro-batch with no masked token returns hidden.sum() * 0: zero, finite, and connected
// to the graph so backward and the optimizer bookkeeping run as usual.
//
// Metrics (the host prefixes "train/" or "eval/" and averages over the window): loss (this
// micro-batch normalised by its own rows/documents, so the window average is the window loss),
// num_masked_tokens, mask_ratio (masked / eligible tokens), and when something is masked:
// accuracy (argmax == target), ce_loss (mean CE), avg_p_mask (mean p of masked tokens),
// importance_weight_avg (mean weight 1/p, 1 without weighting); with instruction documents:
// answer_ratio (answer tokens / non-padding tokens), avg_answer_length (per document).
#pragma once

#include "loom/sdk.hpp"

namespace loom::diffusion {

struct LossOptions {
  bool importance_weighting = true;
  bool logit_shift = false;
};

sdk::LossResult diffusion_loss(const sdk::ModelOutput& out, const sdk::Batch& batch,
                               const sdk::StepContext& ctx, const LossOptions& options);

}  // namespace loom::diffusion
