#!/usr/bin/env python3
"""Golden values for rope_frequencies_test.cpp, computed with plain floats (no torch).

Llama 3.1 / 3.2 RoPE scaling ("rope_type": "llama3"), as described in the Llama 3 paper and
transformers' modeling_rope_utils: with wavelength w = 2*pi / f of each base frequency f,
  w < original / high_freq_factor   -> f unchanged
  w > original / low_freq_factor    -> f / factor
  otherwise, with s = (original / w - low) / (high - low): (1 - s) * f / factor + s * f
Run: python3 tests/io/rope_frequencies_reference.py   (prints the C++ arrays)
"""
import math


def base_frequencies(theta, head_dim):
    return [theta ** (-(2 * i) / head_dim) for i in range(head_dim // 2)]


def llama3(theta, head_dim, factor, low, high, original):
    out = []
    for f in base_frequencies(theta, head_dim):
        wavelength = 2 * math.pi / f
        if wavelength < original / high:
            out.append(f)
        elif wavelength > original / low:
            out.append(f / factor)
        else:
            s = (original / wavelength - low) / (high - low)
            out.append((1 - s) * f / factor + s * f)
    return out


def cpp_array(name, values):
    body = ",\n".join("    " + ", ".join(repr(v) for v in values[i:i + 4])
                      for i in range(0, len(values), 4))
    return f"const std::vector<double> {name} = {{\n{body}}};"


if __name__ == "__main__":
    # Llama-3.2-1B: rope_theta 500000, head_dim 2048 / 32 = 64, rope_scaling factor 32, low 1,
    # high 4, original_max_position_embeddings 8192.
    print(cpp_array("kLlama32Golden", llama3(500000.0, 64, 32.0, 1.0, 4.0, 8192)))
    # Plain RoPE, theta 10000, head_dim 8, and linear scaling by 4 of the same.
    print(cpp_array("kPlainGolden", base_frequencies(10000.0, 8)))
    print(cpp_array("kLinearGolden", [f / 4 for f in base_frequencies(10000.0, 8)]))
