#!/usr/bin/python3
"""Independent reference for the golden values in diffusion_loss_test.cpp.

Recomputes the LLaDA diffusion loss on the small fixed example of the test with plain
Python loops over torch's log-softmax (float64), straight from the formulas in
plugins/diffusion/diffusion_loss.hpp -- it shares no code with the plugin.
Run: /usr/bin/python3 tests/diffusion/loss_reference.py
"""
import math

import torch

V, H, B, S = 6, 4, 2, 5
hidden = torch.tensor([[[math.sin(0.3 * (b * S * H + s * H + h) + 0.1) for h in range(H)]
                        for s in range(S)] for b in range(B)], dtype=torch.float64)
W = torch.tensor([[0.5 * math.cos(0.7 * (v * H + h)) for h in range(H)] for v in range(V)],
                 dtype=torch.float64)
targets = [[1, 2, 3, 4, 0], [2, 5, 1, 3, 4]]
p = [[0.4, 0.4, 0.4, 0.4, 0.0], [0.7, 0.7, 0.7, 0.25, 0.25]]


def ce(b, src, tgt_pos):
    """Cross-entropy of the target at (b, tgt_pos) predicted from hidden state (b, src)."""
    logits = hidden[b, src] @ W.T
    return float(-torch.log_softmax(logits, -1)[targets[b][tgt_pos]])


def argmax_ok(b, src, tgt_pos):
    return int(torch.argmax(hidden[b, src] @ W.T)) == targets[b][tgt_pos]


def show(name, value):
    print(f"{name} = {value:.10f}")


# Pretraining, no shift. Masked: row0 {1, 3}, row1 {0, 2, 4}. Window: 2 rows.
masked = [(0, 1), (0, 3), (1, 0), (1, 2), (1, 4)]
rows = 2
iw = sum(ce(b, s, s) / p[b][s] for b, s in masked) / (rows * S)
show("pretrain_iw", iw)
row0 = [ce(0, 1, 1), ce(0, 3, 3)]
row1 = [ce(1, 0, 0), ce(1, 2, 2), ce(1, 4, 4)]
show("pretrain_no_iw", (sum(row0) / len(row0) + sum(row1) / len(row1)) / rows)
show("pretrain_ce_mean", sum(ce(b, s, s) for b, s in masked) / len(masked))
show("pretrain_accuracy", sum(argmax_ok(b, s, s) for b, s in masked) / len(masked))
show("pretrain_iw_row0_window2", sum(ce(0, s, s) / p[0][s] for s in (1, 3)) / (rows * S))
show("pretrain_iw_window4", sum(ce(b, s, s) / p[b][s] for b, s in masked) / (4 * S))

# Pretraining with logit shift: target i from hidden i-1. Masked: row0 {1, 3}, row1 {1, 4}.
masked_shift = [(0, 1), (0, 3), (1, 1), (1, 4)]
show("shift_iw", sum(ce(b, s - 1, s) / p[b][s] for b, s in masked_shift) / (rows * S))

# Instruction data. Labels: row0 [-100, 2, 3, 4, -100(pad)], row1 [-100, 5, 1, -100, 4].
# Documents: row0 seg1 (answer positions 1..3 -> length 3), row1 seg1 (answer 1..2 -> 2),
# row1 seg2 (answer 4 -> 1). Masked: row0 {1, 3}, row1 {2, 4}. Window: 3 documents.
docs = 3
sft_iw = ((ce(0, 1, 1) / 0.4 + ce(0, 3, 3) / 0.4) / 3 + (ce(1, 2, 2) / 0.7) / 2 +
          (ce(1, 4, 4) / 0.25) / 1) / docs
show("sft_iw", sft_iw)
sft_no_iw = ((ce(0, 1, 1) + ce(0, 3, 3)) / 2 + ce(1, 2, 2) / 1 + ce(1, 4, 4) / 1) / docs
show("sft_no_iw", sft_no_iw)
show("sft_answer_ratio", (3 + 2 + 1) / 9)
show("sft_avg_answer_length", (3 + 2 + 1) / 3)

# Evaluation: the bound per scored token, sum(CE / p) over the masked tokens divided by the
# eligible tokens (pretraining: the 9 non-padding tokens; instruction: the 6 answer tokens),
# whatever importance weighting says.
show("eval_pretrain_bound", sum(ce(b, s, s) / p[b][s] for b, s in masked) / 9)
show("eval_sft_bound", (ce(0, 1, 1) / 0.4 + ce(0, 3, 3) / 0.4 + ce(1, 2, 2) / 0.7 + ce(1, 4, 4) / 0.25) / 6)
