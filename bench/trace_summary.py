#!/usr/bin/env python3
"""Summarise a Chrome trace written by `trainer bench --profile FILE`: self time per operator
(time inside an op minus the ops it called), per thread, largest first.

    python3 bench/trace_summary.py FILE [--top N]
"""
import argparse, collections, json

ap = argparse.ArgumentParser()
ap.add_argument("trace")
ap.add_argument("--top", type=int, default=30)
a = ap.parse_args()
with open(a.trace) as f:
    data = json.load(f)
events = data["traceEvents"] if isinstance(data, dict) else data
spans = collections.defaultdict(list)
for e in events:
    if e.get("ph") == "X":
        spans[e.get("tid", 0)].append((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)), e["name"]))
self_t, total_t, calls = collections.Counter(), collections.Counter(), collections.Counter()
for tid, evs in spans.items():
    evs.sort(key=lambda x: (x[0], -x[1]))
    stack = []  # [end, name, child_time]
    def close(item):
        end, name, child, start = item
        self_t[name] += (end - start) - child
        if stack:
            stack[-1][2] += end - start
    for start, end, name in evs:
        while stack and stack[-1][0] <= start:
            close(stack.pop())
        stack.append([end, name, 0.0, start])
        total_t[name] += end - start
        calls[name] += 1
    while stack:
        close(stack.pop())
all_self = sum(self_t.values())
print(f"{'op':48s} {'self ms':>10s} {'share':>6s} {'calls':>7s}")
for name, t in self_t.most_common(a.top):
    print(f"{name[:48]:48s} {t / 1e3:10.1f} {100 * t / all_self:5.1f}% {calls[name]:7d}")
print(f"{'(all)':48s} {all_self / 1e3:10.1f}")
