"""Ahead-of-time compilation of every Triton kernel variant for sm_80 and sm_90, without a GPU.

`specs()` lists the variants the launchers can produce (tile sizes from their candidate lists, every
constexpr switch); `compile_spec()` compiles one through triton.compile with a GPUTarget and returns
what the compiler reports. CI runs this (tests/test_triton_aot.py) so a kernel that would fail to
compile on the GPU fails there; `python -m attnbench_kernels.triton.aot` prints a resource table
(shared memory, registers and spills from ptxas) for the kernel notes.

Must run in a process without TRITON_INTERPRET=1 (the kernels must be real JIT functions).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DTYPE_SIG = {"bf16": "bf16", "fp16": "fp16"}


@dataclass(frozen=True)
class Spec:
    name: str
    kernel: str  # attribute name in its module
    module: str  # "flash_fwd" | "paged_attn"
    signature: dict[str, str]
    constexprs: dict[str, Any]
    num_warps: int
    num_stages: int
    archs: tuple[int, ...] = (80, 90)
    # Arguments the JIT would mark 16-divisible at run time (aligned pointers, strides that are
    # multiples of the head dim); without these hints AOT code would not vectorise like JIT code.
    aligned: tuple[str, ...] = ()
    tags: dict[str, Any] = field(default_factory=dict, compare=False)

    def attrs(self) -> dict[tuple[int, ...], list[list[Any]]]:
        names = list(self.signature)
        return {(names.index(a),): [["tt.divisibility", 16]] for a in self.aligned}


def _flash_spec(dtype: str, d: int, causal: bool, tma: bool, bm: int, bn: int, w: int, s: int) -> Spec:
    t = DTYPE_SIG[dtype]
    desc = f"tensordesc<{t}[{bn},{d}]>" if tma else f"*{t}"
    sig = {
        "Q": f"*{t}", "K": f"*{t}", "V": f"*{t}", "Out": f"*{t}", "LSE": "*fp32",
        "desc_k": desc, "desc_v": desc, "cu_q": "*i32", "cu_k": "*i32", "sm_scale": "fp32",
    }
    for name in ("stride_qt", "stride_qh", "stride_kt", "stride_kh", "stride_vt", "stride_vh",
                 "stride_ot", "stride_oh", "stride_lse"):
        sig[name] = "i32"
    block_d = 1 << (d - 1).bit_length()
    const = dict(GROUP=4, HEAD_DIM=d, BLOCK_D=block_d, CAUSAL=causal, USE_TMA=tma, STORE_LSE=True,
                 BLOCK_M=bm, BLOCK_N=bn)
    for k in const:
        sig[k] = "constexpr"
    name = f"flash_{dtype}_d{d}_{'causal' if causal else 'full'}_{'tma' if tma else 'ptr'}_{bm}x{bn}_w{w}s{s}"
    aligned = ("Q", "K", "V", "Out", "LSE", "cu_q", "cu_k", "stride_qt", "stride_qh", "stride_kt",
               "stride_kh", "stride_vt", "stride_vh", "stride_ot", "stride_oh")
    return Spec(name, "flash_fwd_kernel", "flash_fwd", sig, const, w, s, (90,) if tma else (80, 90), aligned)


def _paged_spec(dtype: str, d: int, group: int, kv_block: int, splits: int, block_q: int, bn: int,
                w: int, s: int, causal: bool = True, fp8_kv: bool = False, v_words: bool = False) -> Spec:
    """fp8_kv: an e4m3 cache (fp8e4nv) with float32 scales, dequantised in registers; v_words: its V
    read as int32 words (V_WORDS)."""
    t = DTYPE_SIG[dtype]
    kv = "fp8e4nv" if fp8_kv else t
    sig = {
        "Q": f"*{t}", "KC": f"*{kv}", "VC": "*i32" if v_words else f"*{kv}", "Out": f"*{t}", "TABLES": "*i32",
        "KV_LENS": "*i32",
        "cu_q": "*i32", "PART_O": "*fp32", "PART_LSE": "*fp32", "sm_scale": "fp32",
    }
    if fp8_kv:
        sig.update({"KScale": "*fp32", "VScale": "*fp32", "stride_sc": "i32"})
    for name in ("stride_qt", "stride_qh", "stride_ot", "stride_oh", "stride_kb", "stride_ks", "stride_kh",
                 "stride_vb", "stride_vs", "stride_vh", "stride_tb", "stride_pos", "stride_pot", "stride_poh",
                 "stride_pls", "stride_plt", "chunk", "num_splits"):
        sig[name] = "i32"
    group_pad = 1 << (group - 1).bit_length()
    const = dict(GROUP=group, GROUP_PAD=group_pad, HEAD_DIM=d, BLOCK_D=1 << (d - 1).bit_length(),
                 KV_BLOCK=kv_block, CAUSAL=causal, SPLIT=splits > 1, BLOCK_Q=block_q,
                 BLOCK_M=max(16, block_q * group_pad), BLOCK_N=bn)
    if fp8_kv:
        const.update(KV_CAST=True, HAS_KV_SCALE=True, V_WORDS=v_words)
    for k in const:
        sig[k] = "constexpr"
    kv_tag = ("_kvfp8w" if v_words else "_kvfp8") if fp8_kv else ""
    name = f"paged_{dtype}{kv_tag}_d{d}_g{group}_bs{kv_block}_split{splits}_q{block_q}_n{bn}_w{w}s{s}"
    aligned = ("Q", "KC", "VC", "Out", "TABLES", "KV_LENS", "cu_q", "PART_O", "PART_LSE", "stride_qt",
               "stride_qh", "stride_ot", "stride_oh", "stride_kb", "stride_ks", "stride_kh", "stride_vb",
               "stride_vs", "stride_vh", "stride_pos", "stride_pot", "stride_poh", "stride_pls", "chunk")
    return Spec(name, "paged_attn_kernel", "paged_attn", sig, const, w, s, aligned=aligned)


def _reduce_spec(d: int, splits: int) -> Spec:
    sig = {"PART_O": "*fp32", "PART_LSE": "*fp32", "Out": "*bf16"}
    strides = ("stride_pos", "stride_pot", "stride_poh", "stride_pls", "stride_plt", "stride_ot", "stride_oh",
               "num_splits")
    for name in strides:
        sig[name] = "i32"
    const = dict(SPLITS_PAD=1 << (splits - 1).bit_length(), HEAD_DIM=d,
                 BLOCK_D=1 << (d - 1).bit_length())
    for k in const:
        sig[k] = "constexpr"
    aligned = ("PART_O", "PART_LSE", "Out", "stride_pos", "stride_pot", "stride_poh", "stride_pls",
               "stride_ot", "stride_oh")
    return Spec(f"split_reduce_d{d}_s{splits}", "split_reduce_kernel", "paged_attn", sig, const, 4, 1,
                aligned=aligned)


def specs(full: bool = False) -> list[Spec]:
    """The variants CI compiles. full=True adds every launch candidate (for the resource table)."""
    from . import flash_fwd, paged_attn

    out: list[Spec] = []
    # Flash: the first GPU tile of each head-dim class, TMA (sm_90) and pointer loads; both masks at 128.
    for d in (64, 128, 256):
        for causal in (False, True) if (full or d == 128) else (True,):
            cands = flash_fwd.flash_candidates(d, causal, 4096, on_gpu=True)
            for cfg in cands if full else cands[:1]:
                for tma in (False, True):
                    out.append(_flash_spec("bf16", d, causal, tma, cfg["BLOCK_M"], cfg["BLOCK_N"],
                                           cfg.num_warps, cfg.num_stages))
    out.append(_flash_spec("fp16", 96, True, False, 64, 64, 4, 3))  # a head dim that is not a power of 2
    # Paged: decode (one-pass and split), chunked prefill, block sizes on both sides of BLOCK_N.
    # Every decode tile the tuner may pick at bs16; the H100 winner (BLOCK_N 128) also split and at bs128.
    for cfg in paged_attn.paged_candidates(128, 4, 1, on_gpu=True, kv_block=16):
        out.append(_paged_spec("bf16", 128, 4, 16, 1, 1, cfg["BLOCK_N"], cfg.num_warps, cfg.num_stages))
    for kv_block, splits in ((16, 8), (128, 1)):
        out.append(_paged_spec("bf16", 128, 4, kv_block, splits, 1, 128, 4, 3))
    mixed = paged_attn.paged_candidates(128, 8, 64, on_gpu=True)[0]
    out.append(_paged_spec("bf16", 128, 8, 16, 1, mixed["BLOCK_Q"], mixed["BLOCK_N"], mixed.num_warps,
                           mixed.num_stages))
    out.append(_paged_spec("fp16", 256, 1, 8, 1, 1, 32, 4, 3))
    out.append(_paged_spec("fp16", 64, 2, 1, 2, 1, 64, 4, 3))
    # fp8 e4m3 KV (the kernel converts in registers; Triton has no e4m3 on sm_80, so sm_90 only):
    # one-pass decode, split decode (V as bytes and as int32 words), fp16 chunked prefill
    fp8 = [_paged_spec("bf16", 128, 4, 16, 1, 1, 64, 4, 3, fp8_kv=True),
           _paged_spec("bf16", 128, 4, 16, 8, 1, 128, 4, 3, fp8_kv=True),
           _paged_spec("bf16", 128, 4, 16, 8, 1, 128, 4, 3, fp8_kv=True, v_words=True),
           _paged_spec("fp16", 128, 8, 16, 1, mixed["BLOCK_Q"], mixed["BLOCK_N"], mixed.num_warps,
                       mixed.num_stages, fp8_kv=True)]
    out += [replace(spec, archs=(90,)) for spec in fp8]
    out.append(_reduce_spec(128, 8))
    return out


def compile_spec(spec: Spec, arch: int) -> dict[str, Any]:
    """Compile one variant for cuda:arch; returns shared bytes and whether key instructions appear."""
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    module = importlib.import_module(f"{__package__}.{spec.module}")
    fn = getattr(module, spec.kernel)
    src = ASTSource(fn, spec.signature, constexprs=spec.constexprs, attrs=spec.attrs())
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": spec.num_warps, "num_stages": spec.num_stages})
    ptx = compiled.asm["ptx"]
    return {
        "name": spec.name,
        "arch": arch,
        "shared": compiled.metadata.shared,
        "wgmma": "wgmma.mma_async" in ptx,
        "mma": "mma.sync" in ptx,
        "tma": "cp.async.bulk.tensor" in ptx,
        "cp_async": "cp.async.cg" in ptx or "cp.async.ca" in ptx,
        "ptx": ptx,
    }


SMEM_LIMIT = {80: 163 * 1024, 90: 227 * 1024}  # usable shared memory per block (bytes)


def ptxas_resources(ptx: str, arch: int) -> dict[str, int]:
    """Registers and spill bytes from the wheel's ptxas (-v)."""
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = get_ptxas(arch).path
    sm = f"sm_{arch}a" if arch == 90 else f"sm_{arch}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.ptx"
        path.write_text(ptx)
        res = subprocess.run([ptxas, "-v", f"--gpu-name={sm}", str(path), "-o", str(Path(tmp) / "k.cubin")],
                             capture_output=True, text=True)
    text = res.stdout + res.stderr
    regs = re.search(r"Used (\d+) registers", text)
    spill = re.search(r"(\d+) bytes spill stores", text)
    return {"regs": int(regs.group(1)) if regs else -1, "spill_bytes": int(spill.group(1)) if spill else -1}


def compile_all_json(arch: int) -> int:
    """CI entry: compile every spec for one arch, one JSON line each (errors reported, not raised)."""
    import json

    for spec in specs():
        if arch not in spec.archs:
            continue
        row: dict[str, Any] = {"name": spec.name, "arch": arch, "module": spec.module,
                               "tma_spec": "_tma_" in spec.name}
        try:
            info = compile_spec(spec, arch)
            info.pop("ptx")
            row.update(info, ok=True)
        except Exception as exc:  # reported to the test, which fails with the message
            row.update(ok=False, error=f"{type(exc).__name__}: {str(exc)[-400:]}")
        print(json.dumps(row), flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--json":
        return compile_all_json(int(argv[1]))
    full = "--full" in argv
    for spec in specs(full=full):
        for arch in spec.archs:
            info = compile_spec(spec, arch)
            res = ptxas_resources(info["ptx"], arch)
            fits = "ok" if info["shared"] <= SMEM_LIMIT[arch] else "TOO-BIG"
            print(f"{spec.name:60s} sm_{arch} smem {info['shared']:6d} {fits:7s} regs {res['regs']:3d} "
                  f"spill {res['spill_bytes']:4d} wgmma {int(info['wgmma'])} tma {int(info['tma'])} "
                  f"cp.async {int(info['cp_async'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
