#!/usr/bin/env python3
"""Writes the addition task of configs/addition-diffusion.toml: a task whose answers a program
can check, to measure the accuracy of the diffusion sampler's decoding modes
(scripts/sampling-quality.sh).

    python3 configs/data/make_addition.py [--train 40000] [--test 400] [--seed 13] [--out configs/data]
        [--digits 3]

Each line is a prompt_response example: {"prompt": "123+045=", "response": "0168"}. Both
operands are drawn uniformly from 0..999 and written with 3 digits, the sum with 4 (zero
padded), so every prompt is 8 bytes and every answer 4 digits: a model answers in exactly 4
tokens (the dataset type appends EOS to the response, but the diffusion forward process never
masks special tokens, so EOS is not learned and cannot mark the end). The test pairs (a, b) never occur in the training set (nor does a test pair appear
twice). Python standard library only; the same arguments give byte-identical files (the
committed ones: the defaults). --digits D makes a harder set (D-digit operands, D+1-digit
sums, e.g. 6 for 7-token answers, where caching over several blocks and parallel decoding
have more room to go wrong) under the names addition<D>_{train,test}.jsonl.
"""
import argparse
import json
import os
import random


def example(a, b, d):
    return {"prompt": "%0*d+%0*d=" % (d, a, d, b), "response": "%0*d" % (d + 1, a + b)}


def write(path, pairs, d):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for a, b in pairs:
            f.write(json.dumps(example(a, b, d), separators=(", ", ": ")) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=int, default=40000)
    ap.add_argument("--test", type=int, default=400)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--digits", type=int, default=3)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    rng = random.Random(a.seed)
    # distinct pairs, drawn without replacement from the 10^6 possible ones
    top = 10 ** a.digits
    picks = rng.sample(range(top * top), a.train + a.test)
    pairs = [divmod(p, top) for p in picks]
    test, train = pairs[:a.test], pairs[a.test:]
    name = "addition" if a.digits == 3 else "addition%d" % a.digits
    write(os.path.join(a.out, name + "_train.jsonl"), train, a.digits)
    write(os.path.join(a.out, name + "_test.jsonl"), test, a.digits)
    print("wrote %d train and %d test examples to %s" % (len(train), len(test), a.out))


if __name__ == "__main__":
    main()
