#!/usr/bin/env python3
"""An independent reader of the TensorBoard event files loom writes, for the tests.

Decodes every events.out.tfevents.* file of a runs/ folder by hand: the TFRecord framing
(uint64 length, masked CRC-32C of the length, payload, masked CRC-32C of the payload; both
CRCs checked) and the protocol-buffer wire format, by the field numbers of TensorBoard's
published event.proto / summary.proto / tensor.proto. (Debian 12 has python3-protobuf but not
TensorBoard's .proto files, so the few messages are decoded here.) Then checks the events
against metrics.jsonl (and samples.jsonl / the config when given):

  - every value of every metrics.jsonl line is a scalar with the same tag and step, equal to
    the value rounded to float32 (a null is a NaN); the epoch is train/epoch;
  - there is no other scalar, and no (tag, step) twice, across all files (a resumed run's
    files continue the earlier ones without duplicates);
  - each samples.jsonl line is a text summary samples/<k> at its step holding its texts;
  - the config is a text summary "config" at step 0.

Prints a summary line and exits 0, or lists the problems and exits 1.
usage: tensorboard_reader.py RUNS_DIR METRICS_JSONL [--samples SAMPLES_JSONL]
                             [--config CONFIG_TOML] [--dump]
"""
import argparse
import json
import math
import os
import struct
import sys


def crc32c(data):
    # Bitwise CRC-32C (reflected Castagnoli polynomial); slow but plainly the definition.
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(path):
    data = open(path, "rb").read()
    at = 0
    while at < len(data):
        if len(data) - at < 12:
            raise ValueError(f"{path}: {len(data) - at} stray bytes at offset {at}")
        (length,) = struct.unpack_from("<Q", data, at)
        (length_crc,) = struct.unpack_from("<I", data, at + 8)
        if masked(crc32c(data[at:at + 8])) != length_crc:
            raise ValueError(f"{path}: bad length CRC at offset {at}")
        body = data[at + 12:at + 12 + length]
        if len(body) != length or len(data) < at + 16 + length:
            raise ValueError(f"{path}: truncated record at offset {at}")
        (body_crc,) = struct.unpack_from("<I", data, at + 12 + length)
        if masked(crc32c(body)) != body_crc:
            raise ValueError(f"{path}: bad payload CRC at offset {at}")
        yield body
        at += 16 + length


def varint(buf, at):
    value, shift = 0, 0
    while True:
        b = buf[at]
        at += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, at
        shift += 7


def fields(buf):
    """(field number, wire type, value) of each field of one message."""
    at = 0
    while at < len(buf):
        key, at = varint(buf, at)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, at = varint(buf, at)
        elif wire == 1:
            value = buf[at:at + 8]
            at += 8
        elif wire == 5:
            value = buf[at:at + 4]
            at += 4
        elif wire == 2:
            n, at = varint(buf, at)
            value = buf[at:at + n]
            at += n
        else:
            raise ValueError(f"wire type {wire} not expected")
        yield field, wire, value


def int64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def decode_value(buf):
    # Summary.Value: tag = 1, simple_value = 2 (float), tensor = 8, metadata = 9
    out = {"tag": None, "simple_value": None, "text": None, "plugin": None}
    for f, w, v in fields(buf):
        if f == 1 and w == 2:
            out["tag"] = v.decode("utf-8")
        elif f == 2 and w == 5:
            out["simple_value"] = struct.unpack("<f", v)[0]
        elif f == 9 and w == 2:  # SummaryMetadata.plugin_data = 1 -> PluginData.plugin_name = 1
            for f2, w2, v2 in fields(v):
                if f2 == 1 and w2 == 2:
                    for f3, w3, v3 in fields(v2):
                        if f3 == 1 and w3 == 2:
                            out["plugin"] = v3.decode("utf-8")
        elif f == 8 and w == 2:  # TensorProto: dtype = 1 (DT_STRING = 7), string_val = 8
            dtype, strings = None, []
            for f2, w2, v2 in fields(v):
                if f2 == 1 and w2 == 0:
                    dtype = v2
                elif f2 == 8 and w2 == 2:
                    strings.append(v2.decode("utf-8"))
            if dtype != 7 or len(strings) != 1:
                raise ValueError(f"text tensor with dtype {dtype} and {len(strings)} strings")
            out["text"] = strings[0]
    return out


def decode_event(buf):
    # Event: wall_time = 1 (double), step = 2 (int64), file_version = 3, summary = 5
    event = {"wall_time": None, "step": 0, "file_version": None, "values": []}
    for f, w, v in fields(buf):
        if f == 1 and w == 1:
            event["wall_time"] = struct.unpack("<d", v)[0]
        elif f == 2 and w == 0:
            event["step"] = int64(v)
        elif f == 3 and w == 2:
            event["file_version"] = v.decode("utf-8")
        elif f == 5 and w == 2:  # Summary: value = 1 (repeated)
            for f2, w2, v2 in fields(v):
                if f2 == 1 and w2 == 2:
                    event["values"].append(decode_value(v2))
    return event


def as_float32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs")
    ap.add_argument("metrics")
    ap.add_argument("--samples")
    ap.add_argument("--config")
    ap.add_argument("--dump", action="store_true")
    a = ap.parse_args()

    problems = []
    files = sorted(f for f in os.listdir(a.runs) if f.startswith("events.out.tfevents."))
    if not files:
        print(f"no event files in {a.runs}")
        return 1
    scalars = {}  # (tag, step) -> value
    texts = {}    # (tag, step) -> text
    for name in files:
        path = os.path.join(a.runs, name)
        events = [decode_event(r) for r in records(path)]
        if not events or events[0]["file_version"] != "brain.Event:2":
            problems.append(f"{name}: does not start with file_version brain.Event:2")
        for e in events:
            if e["wall_time"] is None:
                problems.append(f"{name}: an event without wall_time at step {e['step']}")
            for v in e["values"]:
                key = (v["tag"], e["step"])
                if v["simple_value"] is not None:
                    if key in scalars:
                        problems.append(f"scalar {key} twice")
                    scalars[key] = v["simple_value"]
                elif v["text"] is not None:
                    if v["plugin"] != "text":
                        problems.append(f"text {key} without plugin_data 'text'")
                    if key in texts:
                        problems.append(f"text {key} twice")
                    texts[key] = v["text"]
                if a.dump:
                    print(name, e["step"], v)

    expected = {}
    for line in open(a.metrics, encoding="utf-8"):
        if not line.strip():
            continue
        row = json.loads(line)
        step = row["step"]
        for k, v in row.items():
            if k == "step":
                continue
            tag = "train/epoch" if k == "epoch" else k
            value = float("nan") if v is None else as_float32(float(v))
            if (tag, step) in expected and not same(expected[(tag, step)], value):
                problems.append(f"metrics.jsonl: {tag} at step {step} twice, differently")
            expected[(tag, step)] = value
    for key, value in sorted(expected.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if key not in scalars:
            problems.append(f"missing scalar {key[0]} at step {key[1]} (metrics.jsonl: {value})")
        elif not same(scalars[key], value):
            problems.append(f"scalar {key[0]} at step {key[1]}: {scalars[key]!r} != {value!r}")
    for key in sorted(set(scalars) - set(expected), key=lambda k: (k[1], k[0])):
        problems.append(f"scalar {key[0]} at step {key[1]} is not in metrics.jsonl")

    n_samples = 0
    if a.samples:
        per_step = {}
        for line in open(a.samples, encoding="utf-8"):
            if not line.strip():
                continue
            row = json.loads(line)
            k = per_step[row["step"]] = per_step.get(row["step"], 0) + 1
            key = (f"samples/{k}", row["step"])
            text = texts.get(key)
            if text is None:
                problems.append(f"missing text {key}")
                continue
            n_samples += 1
            for field in ("original", "masked", "generated"):
                shown = "    " + row[field].replace("\n", "\n    ")
                if shown not in text:
                    problems.append(f"text {key}: the sample's {field} is not in it")
        extra = [k for k in texts if k[0].startswith("samples/")
                 and per_step.get(k[1], 0) < int(k[0].split("/")[1])]
        for key in sorted(extra, key=lambda k: (k[1], k[0])):
            problems.append(f"text {key} is not in samples.jsonl")
    if a.config:
        config = open(a.config, encoding="utf-8").read()
        text = texts.get(("config", 0))
        if text is None:
            problems.append("no config text at step 0")
        elif text.rstrip() != ("    " + config.rstrip("\n").replace("\n", "\n    ")).rstrip():
            problems.append("the config text differs from " + a.config)
        if [k for k in texts if k[0] == "config" and k[1] != 0]:
            problems.append("config text at a step other than 0")

    for p in problems[:40]:
        print("PROBLEM:", p)
    if problems:
        print(f"{len(problems)} problems")
        return 1
    print(f"OK: {len(files)} event files, {len(scalars)} scalars match metrics.jsonl, "
          f"{n_samples} samples, {len(texts)} texts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
