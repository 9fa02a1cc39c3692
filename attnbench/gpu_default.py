"""Which shipped config is the embedded default for the GPU present (`attnbench sweep` without one).

An H200, or any Hopper card (compute capability 9.x) with more than 100 GB of memory (the H200's
141 GB, a GH200's 96+ GB HBM3e counts only above 100 GB), gets configs/h200.yaml, sized for that
memory and bandwidth; an A100 gets a100.yaml; every other GPU h100.yaml. The reason is returned so
the command can say which it picked and why.
"""

from __future__ import annotations

HOPPER_MAJOR = 9
LARGE_MEMORY_BYTES = 100e9  # above the H100's 80/94 GB, below the H200's 141 GB


def pick_gpu_config(name: str, memory_bytes: int, capability: tuple[int, int]) -> tuple[str, str]:
    """(config file name, one-line reason) for a GPU's name, memory (bytes) and compute capability."""
    gb = memory_bytes / 1e9
    if "H200" in name.upper():
        return "h200.yaml", f"{name} is an H200"
    if capability[0] == HOPPER_MAJOR and memory_bytes > LARGE_MEMORY_BYTES:
        sm = f"sm_{capability[0]}{capability[1]}"
        return "h200.yaml", f"{name} is a Hopper GPU ({sm}) with {gb:.0f} GB > 100 GB"
    if "A100" in name.upper():
        return "a100.yaml", f"{name} is an A100"
    return "h100.yaml", f"{name} ({gb:.0f} GB, sm_{capability[0]}{capability[1]}) is neither an A100 nor a " \
        "Hopper GPU with > 100 GB"
