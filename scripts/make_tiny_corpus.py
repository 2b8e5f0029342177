#!/usr/bin/env python3
"""Writes configs/data/tiny_stories.jsonl: a small, original, learnable corpus for the demo
configs (short templated stories with names to copy, counts to compute and fixed phrasing).
Deterministic: the same file on every machine. Run from the repository root."""
import json, random

rng = random.Random(1234)
names = ["Ada", "Ben", "Cleo", "Dan", "Eve", "Finn", "Gus", "Hana", "Ivo", "Jade", "Kai", "Lena"]
things = ["apple", "book", "shell", "coin", "stone", "card", "cup", "kite"]
colors = ["red", "blue", "green", "yellow", "white", "black"]
places = ["the park", "the beach", "the market", "the school", "the river", "the garden"]
words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

def story():
    a, b = rng.sample(names, 2)
    t, c, p = rng.choice(things), rng.choice(colors), rng.choice(places)
    n = rng.randint(2, 9)
    k = rng.randint(1, n - 1)
    s = [f"{a} went to {p} with {words[n]} {c} {t}s."]
    s.append(f"At {p}, {a} met {b}.")
    s.append(f"{a} gave {words[k]} {c} {t}{'s' if k > 1 else ''} to {b}.")
    left = n - k
    s.append(f"Now {a} has {words[left]} {c} {t}{'s' if left != 1 else ''} and {b} has "
             f"{words[k]}.")
    if rng.random() < 0.5:
        s.append(f"{b} said thank you to {a}, and they walked home from {p}.")
    return " ".join(s)

with open("configs/data/tiny_stories.jsonl", "w") as f:
    for i in range(1500):
        f.write(json.dumps({"text": story()}) + "\n")
