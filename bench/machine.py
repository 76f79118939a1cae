"""What machine a benchmark ran on: int8 speed differs 5x between AVX-512 (VNNI) and AVX2-only x86 CPUs."""

from __future__ import annotations

import os
import platform
import re
import subprocess

# The instruction-set flags that change TFLite int8 and TensorFlow speed; the rest of /proc/cpuinfo is noise.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "neon", "asimd")


def cpu_description() -> dict[str, object]:
    """lscpu's model name, the relevant instruction-set flags, the core count and the architecture."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    model = re.search(r"^Model name:\s*(.+)$", text, re.M)
    flags_line = re.search(r"^Flags:\s*(.+)$", text, re.M)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    return {
        "model": model.group(1).strip() if model else platform.processor() or "unknown",
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "flags": [f for f in RELEVANT_FLAGS if f in flags],
    }


def cpu_line(cpu: dict[str, object]) -> str:
    """One line for a table caption: 'AMD EPYC, x86_64, 2 cores, avx2 avx512f avx512_vnni avx512_bf16'."""
    return f"{cpu['model']}, {cpu['arch']}, {cpu['cores']} cores, flags: {' '.join(cpu['flags']) or 'none listed'}"
