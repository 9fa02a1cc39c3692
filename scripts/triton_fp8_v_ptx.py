"""What reading an fp8 V cache as int32 words (V_WORDS) changes in the compiled decode kernel, on a
CPU: triton-paged fp8 decode (bf16 queries, D128, GQA 4, 16-token blocks, one split, 4 warps, 3
stages) compiled for sm_90 at key tiles of 128 and 64 tokens, V read as bytes and as words.

    python3 scripts/triton_fp8_v_ptx.py

Per variant: ptxas registers and spill bytes, shared memory, and PTX instruction counts: 1-byte global
loads (V read byte by byte, outside the cp.async pipeline), cp.async copies (staged loads), byte-wise
shared-memory traffic, e4m3 pair conversions and ldmatrix. kernels/notes/triton.md quotes its output.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnbench.paths import import_kernels  # noqa: E402

import_kernels()

from attnbench_kernels.triton import aot  # noqa: E402

COUNTS = {
    "ld.global.b8": r"ld\.global(\.nc)?\.b8",
    "cp.async": r"cp\.async\.c[ag]",
    "ld.shared.b8": r"ld\.shared\.b8",
    "st.shared.b8": r"st\.shared\.b8",
    "cvt e4m3x2": r"e4m3x2",
    "ldmatrix": r"ldmatrix",
}


def main() -> int:
    for block_n in (128, 64):
        for words in (False, True):
            spec = aot._paged_spec("bf16", 128, 4, 16, 1, 1, block_n, 4, 3, fp8_kv=True, v_words=words)
            compiled = aot.compile_spec(spec, 90)
            ptx = compiled["ptx"]
            res = aot.ptxas_resources(ptx, 90)
            counts = " ".join(f"{name} {len(re.findall(pat, ptx))}" for name, pat in COUNTS.items())
            print(f"BLOCK_N {block_n:3d} V as {'words' if words else 'bytes'}: {res['regs']} registers, "
                  f"{res['spill_bytes']} B spill, {compiled['shared']} B shared; {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
