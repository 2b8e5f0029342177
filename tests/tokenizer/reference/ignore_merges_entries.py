"""Independent reference for hf_tokenizer_test's ignore_merges cases.

Lists the Llama 3 vocabulary entries that plain BPE (the merges alone, as with
ignore_merges=false) does NOT turn back into the entry itself, so that only ignore_merges
makes a word equal to the entry encode as that one id. Plain Python, no tokenizer library:
textbook BPE (merge the lowest-ranked adjacent pair until none is left).

Usage: python3 ignore_merges_entries.py ../../../../shared/data/tokenizers/llama3/tokenizer.json
"""
import json
import sys


def bpe(symbols, ranks):
    symbols = list(symbols)
    while len(symbols) > 1:
        best = None
        for i in range(len(symbols) - 1):
            rank = ranks.get((symbols[i], symbols[i + 1]))
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, i)
        if best is None:
            break
        i = best[1]
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


def main():
    model = json.load(open(sys.argv[1], encoding="utf-8"))["model"]
    vocab = model["vocab"]
    ranks = {}
    for rank, merge in enumerate(model["merges"]):
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        ranks.setdefault((left, right), rank)
    changed = []
    for token, token_id in vocab.items():
        pieces = bpe(token, ranks)  # byte-level spelling: one character per byte
        if pieces != [token]:
            changed.append((token_id, token, [vocab[p] for p in pieces]))
    changed.sort()
    print(f"{len(changed)} of {len(vocab)} entries need ignore_merges")
    for token_id, token, ids in changed:
        print(json.dumps({"id": token_id, "token": token, "plain_bpe_ids": ids}, ensure_ascii=False))


if __name__ == "__main__":
    main()
