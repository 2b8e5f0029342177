#!/usr/bin/env python3
"""Writes configs/data/tiny_alpaca.jsonl: small instruction-tuning data in Axolotl's alpaca
format ({"instruction", "input", "output"}), for configs/axolotl/instruct-diffusion-sft.yml and
the tests. Three checkable tasks (add two numbers, reverse a word, count letters), some with an
empty input as alpaca has. Deterministic: the same file on every run."""
import json
import os
import random

WORDS = ["apple", "river", "garden", "yellow", "planet", "window", "little", "forest",
         "silver", "rabbit", "candle", "bridge", "orange", "winter", "market", "pencil"]


def examples(rng):
    for _ in range(300):
        task = rng.randrange(3)
        if task == 0:
            a, b = rng.randrange(100), rng.randrange(100)
            yield {"instruction": "Add the two numbers.", "input": f"{a} + {b}",
                   "output": str(a + b)}
        elif task == 1:
            w = rng.choice(WORDS)
            yield {"instruction": f"Write the word {w} backwards.", "input": "",
                   "output": w[::-1]}
        else:
            w = rng.choice(WORDS)
            yield {"instruction": "How many letters does the word have?", "input": w,
                   "output": str(len(w))}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_alpaca.jsonl")
    with open(out, "w") as f:
        for e in examples(random.Random(16)):
            f.write(json.dumps(e) + "\n")


if __name__ == "__main__":
    main()
