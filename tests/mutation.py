"""Planted faults for checking the correctness check: a check that passes a wrong kernel is worse than none.

Each mutant is a list of exact text substitutions into a copy of a kernel's source (Triton modules under
kernels/triton, CUDA translation units under kernels/cuda). A substitution must match exactly once: when
a kernel is rewritten and a site disappears, loading the mutant fails loudly instead of running the
honest kernel under a mutant's name. A Triton kernel's source here is its module together with the
helper modules it imports (kernels/triton/online_softmax.py): a site in a helper is planted into a copy
of the helper that only the mutated kernel imports.
The faults are the bugs paged and flash kernels really have:
  last-key-dropped        the context is one token short (off-by-one at the sequence end)
  last-block-dropped      the last, partial KV block of each sequence is skipped
  last-split-dropped      the split-K merge leaves out the last partition (long sequences only)
  causal-diagonal         each query row misses its own diagonal key
  kv-head-wrong-group     K/V are read from the neighbouring KV head (GQA group mapping)
  softmax-scale-2pct      the softmax scale is 2% off
  stale-slot-read         one slot past the sequence's end is read (a stale token of the cache)
Pattern mutants (PATTERN_MUTANTS, run on windowed / soft-capped / ALiBi cases):
  window-off-by-one       each row sees one key too few at its window's left edge
  window-tile-skipped     the first tile of the window is never loaded (loop bound one tile late)
  softcap-ignored         the soft-cap is not applied
  alibi-slope-halved      ALiBi biases are half what the slopes say
  split-ignores-window    (paged) split-KV chunks start at key 0 instead of the window's start
fp8 KV mutants (FP8_KV_MUTANTS of the Triton kernel; the CUDA tc kernel's "tc-fp8-" ones, FP8_CUDA_MUTANTS),
run on fp8 cases with per-KV-head scales: a K or V scale dropped, or read from KV head 0.
Harness-level mutants (MutantPagedBackend) plant the same faults into a plain PyTorch paged attention,
run through attnbench.point.run_point like any plugin backend.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import torch

from attnbench.backends.base import Backend, Prepared
from attnbench.case import Case
from attnbench.inputs import TORCH_DTYPES, Inputs

ROOT = Path(__file__).resolve().parent.parent
Substitutions = list[tuple[str, str]]

TRITON_MUTANTS: dict[str, dict[str, Substitutions]] = {
    "paged_attn": {
        "last-key-dropped": [("kv_len = tl.load(KV_LENS + seq)\n", "kv_len = tl.load(KV_LENS + seq) - 1\n")],
        "last-block-dropped": [(
            "kv_len = tl.load(KV_LENS + seq)\n",
            "kv_len = (tl.load(KV_LENS + seq) - 1) // KV_BLOCK * KV_BLOCK\n",
        )],
        "last-split-dropped": [(
            "s_ok = offs_s < num_splits\n", "s_ok = offs_s < tl.maximum(num_splits - 1, 1)\n"
        )],
        "causal-diagonal": [(
            "mask = mask & (cols[None, :] <= diag + q0 + qi[:, None])",
            "mask = mask & (cols[None, :] < diag + q0 + qi[:, None])",
        )],
        "kv-head-wrong-group": [(
            "    head = kv_head * GROUP + g\n",
            "    head = ((kv_head + 1) % (tl.num_programs(2) // num_splits)) * GROUP + g\n",
        )],
        "softmax-scale-2pct": [(
            "qk_scale = sm_scale * 1.4426950408889634", "qk_scale = sm_scale * 1.02 * 1.4426950408889634"
        )],
        "stale-slot-read": [
            ("n_ok = tok < kv_len\n", "n_ok = tok <= kv_len\n"),
            ("mask = cols[None, :] < kv_len\n", "mask = cols[None, :] <= kv_len\n"),
        ],
    },
    "flash_fwd": {
        "last-key-dropped": [(
            "kv_len = tl.load(cu_k + seq + 1) - k_start\n", "kv_len = tl.load(cu_k + seq + 1) - k_start - 1\n"
        )],
        "last-block-dropped": [(
            "    for n in tl.range(full_hi, hi, BLOCK_N):",
            "    for n in tl.range(full_hi, hi - BLOCK_N, BLOCK_N):",
        )],
        "causal-diagonal": [(
            "mask = mask & (cols[None, :] <= diag + offs_m[:, None])",
            "mask = mask & (cols[None, :] < diag + offs_m[:, None])",
        )],
        "kv-head-wrong-group": [(
            "kv_head = head // GROUP\n", "kv_head = (head // GROUP + 1) % (tl.num_programs(1) // GROUP)\n"
        )],
        "softmax-scale-2pct": [(
            "qk_scale = sm_scale * 1.4426950408889634", "qk_scale = sm_scale * 1.02 * 1.4426950408889634"
        )],
    },
}

_WINDOW_EDGE = [
    ("mask = (cols[None, :] < kv_len) & (cols[None, :] >= qpos[:, None] - window)",
     "mask = (cols[None, :] < kv_len) & (cols[None, :] > qpos[:, None] - window)"),
    ("mask = mask & (cols[None, :] >= qpos[:, None] - window)",
     "mask = mask & (cols[None, :] > qpos[:, None] - window)"),
]
_SOFTCAP_OFF = [("s = softcap * (1.0 - 2.0 / (", "s = s + 0.0 * (1.0 - 2.0 / (")]
PATTERN_MUTANTS: dict[str, dict[str, Substitutions]] = {
    "flash_fwd": {
        "window-off-by-one": _WINDOW_EDGE,
        "window-tile-skipped": [(
            "lo = (tl.maximum(p_first - window, 0) // BLOCK_N) * BLOCK_N",
            "lo = (tl.maximum(p_first - window, 0) // BLOCK_N + 1) * BLOCK_N",
        )],
        "softcap-ignored": _SOFTCAP_OFF,
        "alibi-slope-halved": [("s = s - slope * tl.where(", "s = s - 0.5 * slope * tl.where(")],
    },
    "paged_attn": {
        "window-off-by-one": _WINDOW_EDGE,
        "window-tile-skipped": [(
            "win_lo = (tl.maximum(kv_len - q_len + q0 - window, 0) // BLOCK_N) * BLOCK_N",
            "win_lo = (tl.maximum(kv_len - q_len + q0 - window, 0) // BLOCK_N + 1) * BLOCK_N",
        )],
        "softcap-ignored": _SOFTCAP_OFF,
        "alibi-slope-halved": [("s = s - slope * tl.where(", "s = s - 0.5 * slope * tl.where(")],
        "split-ignores-window": [("lo = win_lo + split * chunk", "lo = split * chunk")],
    },
}
# Faults in the fp8 KV path (issue 20): caught only on fp8 cases (a bf16 cache never reads a scale);
# "scale-of-head-0" only with per-KV-head scales. tests/test_mutants.py runs them on such a case.
FP8_KV_MUTANTS: dict[str, dict[str, Substitutions]] = {
    "paged_attn": {
        "k-scale-dropped": [("sm_scale = sm_scale * tl.load(KScale + kv_head * stride_sc)",
                             "sm_scale = sm_scale * 1.0")],
        "v-scale-dropped": [("out = out * tl.load(VScale + kv_head * stride_sc)", "out = out * 1.0")],
        "scale-of-head-0": [("tl.load(KScale + kv_head * stride_sc)", "tl.load(KScale)"),
                            ("tl.load(VScale + kv_head * stride_sc)", "tl.load(VScale)")],
        # V read as int32 words (V_WORDS_MUTANTS: run with v_words=True): the four bytes of a word put
        # back in the wrong columns. (A word load without its stale-slot mask is not planted: Triton's
        # interpreter widens the e4m3 NaN byte 0x7F to 480, and a finite stale value meets p = 0, so on
        # a CPU no output can show it; a GPU's conversion gives NaN.)
        "v-words-byte-order": [("low = tl.join(_e4m3_byte(words, 0), _e4m3_byte(words, 16))",
                                "low = tl.join(_e4m3_byte(words, 0), _e4m3_byte(words, 8))"),
                               ("high = tl.join(_e4m3_byte(words, 8), _e4m3_byte(words, 24))",
                                "high = tl.join(_e4m3_byte(words, 16), _e4m3_byte(words, 24))")],
    },
}
V_WORDS_MUTANTS = frozenset(m for m in FP8_KV_MUTANTS["paged_attn"] if m.startswith("v-words-"))

CUDA_MUTANTS: dict[str, dict[str, Substitutions]] = {
    "paged_attention.cu": {
        "last-key-dropped": [("const int ctx = p.kv_lens[seq];", "const int ctx = p.kv_lens[seq] - 1;")],
        "last-block-dropped": [(
            "const int ctx = p.kv_lens[seq];",
            "const int ctx = ((p.kv_lens[seq] - 1) >> p.block_shift) << p.block_shift;",
        )],
        "last-split-dropped": [(
            "const int n_parts = (p.kv_lens[seq] + p.partition_tokens - 1) / p.partition_tokens;",
            "const int n_parts = max(1, (p.kv_lens[seq] + p.partition_tokens - 1) / p.partition_tokens - 1);",
        )],
        "kv-head-wrong-group": [(
            "+ size_t(kv_head) * D +", "+ size_t((kv_head + 1) % p.num_kv_heads) * D +"
        )],
        "softmax-scale-2pct": [(
            "p.scale_log2 = softmax_scale * 1.4426950408889634f;",
            "p.scale_log2 = softmax_scale * 1.02f * 1.4426950408889634f;",
        )],
        "stale-slot-read": [
            ("const bool valid = token < end;", "const bool valid = token <= end;"),
            ("(t0 + row < end) ? dot : -INFINITY", "(t0 + row <= end) ? dot : -INFINITY"),
        ],
        # the tensor-core kernel (impl tc): labels starting "tc-" (see paged_mutant_impls)
        "tc-last-key-dropped": [
            ("const int seq_len = p.kv_lens[seq];", "const int seq_len = p.kv_lens[seq] - 1;"),
        ],
        "tc-last-block-dropped": [(
            "const int seq_len = p.kv_lens[seq];",
            "const int seq_len = ((p.kv_lens[seq] - 1) >> p.block_shift) << p.block_shift;",
        )],
        "tc-kv-head-wrong-group": [(
            "size_t(kv_head) * D + c * kKvVec;", "size_t((kv_head + 1) % p.num_kv_heads) * D + c * kKvVec;"
        )],
        "tc-stale-slot-read": [
            ("const bool in_range = token < end;", "const bool in_range = token <= end;"),
            ("s[nt][e] = token < end ? x : -INFINITY;", "s[nt][e] = token <= end ? x : -INFINITY;"),
        ],
        # the merge of the four warps' softmax states leaves the last warp out
        "tc-warp-dropped": [(
            "w < S::kWarps; ++w) {\n      const float wgt", "w < S::kWarps - 1; ++w) {\n      const float wgt"
        )],
        # P's A fragment with two registers swapped: row g's weights of tokens 8..15 on tokens 0..7.
        # (Swapping into rows g+8 instead was an equivalent mutant at GQA groups <= 8, whose rows 8..15
        # are padding: caught 0 of 4 on an H200.)
        "tc-p-fragment-swapped": [(
            "pa[0] = Pair<M>::from_float2(s[0][0], s[0][1]);",
            "pa[0] = Pair<M>::from_float2(s[1][0], s[1][1]);",
        )],
        "tc-rescale-skipped": [("o[dt][2 * r] *= alpha;", "o[dt][2 * r] *= 1.f;")],
        # fp8 KV (labels "tc-fp8-": run on an fp8 cache, see FP8_CUDA_MUTANTS): V's scale never applied
        "tc-fp8-v-scale-dropped": [
            ("if constexpr (kFp8) acc *= v_scale;", "if constexpr (kFp8) acc *= 1.f;"),
        ],
    },
    "flash_attention.cu": {
        "last-key-dropped": [(
            "kv_len = p.cu_k[seq + 1] - k_begin;", "kv_len = p.cu_k[seq + 1] - k_begin - 1;"
        )],
        "last-block-dropped": [(
            "const int n_end = CAUSAL ? min(kv_len, m0 + BM + diag) : kv_len;",
            "const int n_end = CAUSAL ? min(kv_len, m0 + BM + diag) : max(0, kv_len - 1) / BN * BN;",
        )],
        "causal-diagonal": [("key <= row + diag", "key < row + diag")],
        "kv-head-wrong-group": [(
            "const int kv_head = head / p.group;",
            "const int kv_head = (head / p.group + 1) % p.num_kv_heads;",
        )],
        "softmax-scale-2pct": [(
            "p.scale_log2 = softmax_scale * 1.4426950408889634f;",
            "p.scale_log2 = softmax_scale * 1.02f * 1.4426950408889634f;",
        )],
    },
}


# Faults in the window and soft-cap code of the CUDA kernels, planted by
# scripts/gpu_cuda_patterns_check.py (their cases have windows and a small soft-cap; the general
# mutants script's cases have neither, so these live apart from CUDA_MUTANTS).
CUDA_PATTERN_MUTANTS: dict[str, dict[str, Substitutions]] = {
    "paged_attention.cu": {
        "window-edge-off-by-one": [(
            "ctx - 1 > window ? ctx - 1 - window : 0;", "ctx - 1 > window ? ctx - window : 0;"
        )],
        "window-first-partition-skipped": [(
            "window_start(p.kv_lens[seq], p.window) / p.partition_tokens;",
            "window_start(p.kv_lens[seq], p.window) / p.partition_tokens + (p.window >= 0);",
        )],
        "softcap-ignored": [(
            "if (p.cap_in != 0.f) dot = p.cap_out", "if (false) dot = p.cap_out"
        )],
        "alibi-wrong-head": [("p.alibi_slopes[q_head0 + g]", "p.alibi_slopes[g]")],
        "tc-softcap-ignored": [("if (p.cap_in != 0.f) x = p.cap_out", "if (false) x = p.cap_out")],
        "tc-alibi-wrong-head": [("p.alibi_slopes[q_head0 + row]", "p.alibi_slopes[row]")],
    },
    "flash_attention.cu": {
        "window-edge-off-by-one": [(
            "(!windowed || key >= row + diag - p.window)", "(!windowed || key > row + diag - p.window)"
        )],
        "window-partial-tile-skipped": [(
            "const int tile0 = n_begin / BN;", "const int tile0 = (n_begin + BN - 1) / BN;"
        )],
        "softcap-ignored": [("if (p.cap_in != 0.f) {", "if (false) {")],
        # distance from the top-left instead of the bottom-right aligned position (chunked prefill)
        "alibi-distance-unaligned": [("float(row + diag - key)", "float(row - key)")],
    },
}

# Mutants of paged_attention.cu that only an fp8 cache reaches (a bf16 cache never reads a scale): the GPU
# script runs them, and the honest tc kernel beside them, on fp8 cases with per-KV-head scales.
FP8_CUDA_MUTANTS = frozenset(m for m in CUDA_MUTANTS["paged_attention.cu"] if m.startswith("tc-fp8-"))

# Mutants of paged_attention.cu in code both of its implementations run (the argument checks, the
# window's first token, the split-K merge); the others are simt's, or tc's when labelled "tc-".
PAGED_SHARED_MUTANTS = frozenset({
    "softmax-scale-2pct", "last-split-dropped", "window-edge-off-by-one", "window-first-partition-skipped",
})


def paged_mutant_impls(mutant: str | None) -> tuple[str, ...]:
    """The cuda-paged implementations (ATTNBENCH_CUDA_PAGED_IMPL) a paged_attention.cu mutant is in:
    both for an honest build (None) and the shared code, else the one whose code it changes."""
    if mutant is None or mutant in PAGED_SHARED_MUTANTS:
        return ("tc", "simt")
    return ("tc",) if mutant.startswith("tc-") else ("simt",)


def mutate(source: str, subs: Substitutions, label: str) -> str:
    """Apply each substitution, which must match exactly once."""
    return mutate_files({"source": source}, subs, label)["source"]


def mutate_files(sources: dict[str, str], subs: Substitutions, label: str) -> dict[str, str]:
    """Apply each substitution to the one file of `sources` it matches; it must match exactly once in all."""
    sources = dict(sources)
    for old, new in subs:
        counts = {name: text.count(old) for name, text in sources.items()}
        if sum(counts.values()) != 1:
            raise AssertionError(f"mutant {label}: {old!r} occurs {sum(counts.values())} times in "
                                 f"{', '.join(sources)} (needs 1)")
        name = next(n for n, c in counts.items() if c)
        sources[name] = sources[name].replace(old, new)
    return sources


_TMP = Path(tempfile.mkdtemp(prefix="attnbench-mutants-"))


def _import_copy(package: str, name: str, text: str) -> ModuleType:
    """Import `text` as module <package>.<name> from a real file (@triton.jit reads its functions'
    source through inspect), so that its relative imports resolve inside the kernels package."""
    path = _TMP / f"{name}.py"
    path.write_text(text)
    full = f"{package}.{name}"
    spec = importlib.util.spec_from_file_location(full, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[full] = mod
    spec.loader.exec_module(mod)
    return mod


def load_triton_mutant(module: str, mutant: str) -> ModuleType:
    """A mutated copy of kernels/triton/<module>.py, imported inside the kernels package (relative
    imports resolve to the honest helpers, or to a mutated copy of the helper the mutant's site is in),
    compiled or interpreted to match TRITON_INTERPRET."""
    from attnbench.backends._triton_common import kernels_module

    honest = kernels_module(module)  # imports the package (and applies the interpreter's fixes)
    package = honest.__package__
    assert package is not None
    folder = Path(honest.__file__).parent
    helpers = sys.modules[package].HELPER_MODULES
    files = {name: (folder / f"{name}.py").read_text() for name in (module, *helpers)}
    subs = (TRITON_MUTANTS[module].get(mutant) or PATTERN_MUTANTS[module].get(mutant)
            or FP8_KV_MUTANTS[module][mutant])
    label = f"{module}:{mutant}"
    mutated = mutate_files(files, subs, label)
    name = f"_mutant_{module}_{mutant.replace('-', '_')}"
    for helper in helpers:
        if mutated[helper] != files[helper]:
            helper_copy = f"{name}__{helper}"
            _import_copy(package, helper_copy, mutated[helper])
            redirect = (f"from .{helper} import", f"from .{helper_copy} import")
            mutated[module] = mutate(mutated[module], [redirect], label)
    return _import_copy(package, name, mutated[module])


def write_cuda_mutant(src_dir: Path, unit: str, mutant: str, out_dir: Path) -> Path:
    """kernels/cuda/<unit> with the mutant planted, written to out_dir (compile with -I src_dir)."""
    subs = {**CUDA_MUTANTS.get(unit, {}), **CUDA_PATTERN_MUTANTS.get(unit, {})}[mutant]
    text = mutate((src_dir / unit).read_text(), subs, f"{unit}:{mutant}")
    out = out_dir / f"{Path(unit).stem}__{mutant}.cu"
    out.write_text(text)
    return out


# ---- harness-level mutants: a plain PyTorch paged attention with planted faults --------------------
HARNESS_FAULTS = (
    "none", "last-key-dropped", "last-block-dropped", "causal-diagonal", "kv-head-wrong-group",
    "softmax-scale-2pct", "stale-slot-read",
)


def faulty_paged_attention(case: Case, inputs: Inputs, fault: str) -> torch.Tensor:
    """Attention over the paged pool, one sequence at a time in float32, with `fault` planted."""
    paged = inputs.paged
    assert paged is not None
    bs = paged.block_size
    out = torch.empty_like(inputs.q)
    cu_q = inputs.cu_seqlens_q.tolist()
    scale = case.softmax_scale * (1.02 if fault == "softmax-scale-2pct" else 1.0)
    group = case.gqa_ratio
    for i in range(case.batch):
        kv_len = case.kv_lens[i]
        n = {
            "last-key-dropped": kv_len - 1,
            "last-block-dropped": (kv_len - 1) // bs * bs,
            "stale-slot-read": kv_len + 1,
        }.get(fault, kv_len)
        blocks = paged.block_tables[i, : -(-max(n, 1) // bs)].long()
        # A read past the table's width wraps to block 0 (what a flat table read would give).
        k = paged.k_cache[blocks].reshape(-1, case.num_kv_heads, case.head_dim)
        v = paged.v_cache[blocks].reshape(-1, case.num_kv_heads, case.head_dim)
        if n > k.shape[0]:
            extra = n - k.shape[0]
            k = torch.cat([k, paged.k_cache[0, :extra]])
            v = torch.cat([v, paged.v_cache[0, :extra]])
        k, v = k[:n].float(), v[:n].float()
        if fault == "kv-head-wrong-group":
            k, v = k.roll(1, dims=1), v.roll(1, dims=1)
        k = k.repeat_interleave(group, dim=1).transpose(0, 1)  # (Hq, n, D)
        v = v.repeat_interleave(group, dim=1).transpose(0, 1)
        q = inputs.q[cu_q[i] : cu_q[i + 1]].float().transpose(0, 1)  # (Hq, nq, D)
        nq = q.shape[1]
        scores = q @ k.transpose(1, 2) * scale
        if case.causal:
            shift = -1 if fault == "causal-diagonal" else 0
            qpos = torch.arange(nq, device=q.device)[:, None] + (kv_len - nq) + shift
            scores = scores.masked_fill(torch.arange(n, device=q.device)[None, :] > qpos, float("-inf"))
        out[cu_q[i] : cu_q[i + 1]] = (torch.softmax(scores, -1) @ v).transpose(0, 1).to(out.dtype)
    return out


class MutantPagedBackend(Backend):
    """A plugin-style paged backend computing faulty_paged_attention with its class's fault."""

    fault: ClassVar[str] = "none"
    family = "paged"
    impl = "torch"
    kv_inputs = ("paged",)
    devices = ("cpu", "cuda")

    def supports(self, case: Case) -> tuple[bool, str]:
        return case.paged, "needs a paged case"

    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        assert inputs.q.dtype == TORCH_DTYPES[case.dtype]
        run: Callable[[], Any] = lambda: faulty_paged_attention(case, inputs, self.fault)
        return Prepared(run=run, info={"fault": self.fault})


def mutant_backend(fault: str) -> MutantPagedBackend:
    cls = type(f"Mutant_{fault}", (MutantPagedBackend,), {"fault": fault, "name": f"mutant-{fault}"})
    return cls()
