"""Constants the Python side mirrors from the C++ kernels match the kernel sources.

The backends decide what a kernel supports, how to size its launches and what codes to pass from
numbers that the C++ also holds (dtype codes, heads per block, the v2 partition alignment, head dims,
block sizes, the flash tile configurations, the CPU kernel's bounds). Nothing links the two copies:
a kernel that drops a head dim or a configuration while Python keeps it fails only on a GPU, or
silently picks another branch. So each C++ definition is parsed here (no compiler, no GPU) and
compared with its Python twin; the ABI versions and the ctypes argument lists are checked in
tests/test_abi_signatures.py.
"""

from __future__ import annotations

import re

from attnbench import cpu_build, cuda_lib
from attnbench.backends import _cuda_common, cpu_paged, cuda_flash, cuda_paged
from attnbench.paths import kernels_dir


def source(rel: str) -> str:
    """A kernel source without its // comments (a comment that names a number is no definition)."""
    return re.sub(r"//[^\n]*", "", (kernels_dir() / rel).read_text())


def one(pattern: str, text: str, what: str) -> re.Match:
    found = list(re.finditer(pattern, text))
    assert len(found) == 1, f"{what}: {pattern!r} matches {len(found)} times in the kernel source (needs 1)"
    return found[0]


def enum_values(text: str, prefix: str) -> dict[str, int]:
    """NAME -> value of every `NAME = n` enumerator starting with prefix."""
    return {name: int(value) for name, value in re.findall(rf"\b({prefix}\w+)\s*=\s*(\d+)", text)}


def constexpr_int(text: str, name: str) -> int:
    return int(one(rf"constexpr\s+int\s+{name}\s*=\s*(\d+)\s*;", text, name).group(1))


def function_body(text: str, signature: str) -> str:
    """The body of the function whose definition starts with `signature` (braces matched)."""
    start = text.index("{", one(re.escape(signature), text, signature).end())
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i]
    raise AssertionError(f"{signature}: unbalanced braces")


def switch_launches(body: str, callee: str) -> dict[int | None, tuple[int, ...]]:
    """`case n: return callee<T, ..., a, b>(...)` lines of a dispatch switch: n (None for default) ->
    the integer template arguments."""
    found = {}
    for label, args in re.findall(rf"(case\s+\d+|default):\s*return\s+{callee}<([^>]*)>", body):
        key = None if label == "default" else int(label.split()[1])
        found[key] = tuple(int(a) for a in (x.strip() for x in args.split(",")) if a.isdigit())
    assert None in found, f"{callee}: no default branch"
    return found


def allowed_head_dims(entry_point: str, text: str) -> set[int]:
    """The head dims an entry point accepts: its `if (head_dim != a && head_dim != b ...)` check
    (entry_point: an extern "C" function's name, or the start of another function's definition)."""
    signature = entry_point if "(" in entry_point else f'extern "C" int {entry_point}('
    body = function_body(text, signature)
    check = one(r"if\s*\(((?:\s*head_dim\s*!=\s*\d+\s*&&)*\s*head_dim\s*!=\s*\d+\s*)\)", body, entry_point)
    return {int(v) for v in re.findall(r"head_dim\s*!=\s*(\d+)", check.group(1))}


# ---- dtype codes ---------------------------------------------------------------------------------
def test_cuda_dtype_codes_match_the_header_enum():
    codes = enum_values(source("cuda/api.h"), "ATTNBENCH_")
    assert {"fp16": codes["ATTNBENCH_FP16"], "bf16": codes["ATTNBENCH_BF16"]} == cuda_lib.DTYPE_CODES
    assert set(_cuda_common.DTYPES) == set(cuda_lib.DTYPE_CODES)


def test_cuda_kv_dtype_codes_match_the_header_enum():
    codes = enum_values(source("cuda/api.h"), "ATTNBENCH_KV_")
    header = {"auto": codes["ATTNBENCH_KV_AUTO"], "fp8_e4m3": codes["ATTNBENCH_KV_FP8_E4M3"]}
    assert header == cuda_lib.KV_DTYPE_CODES
    assert len(codes) == len(cuda_lib.KV_DTYPE_CODES)
    assert cuda_paged.CudaPaged.kv_dtypes == set(cuda_lib.KV_DTYPE_CODES)


def test_cpu_dtype_codes_match_the_header_enum():
    codes = enum_values(source("cpu/api.h"), "ATTNBENCH_CPU_")
    header = {"fp32": codes["ATTNBENCH_CPU_FP32"], "fp16": codes["ATTNBENCH_CPU_FP16"],
              "bf16": codes["ATTNBENCH_CPU_BF16"]}
    assert header == cpu_build.DTYPE_CODES
    assert set(cpu_paged.DTYPES) == set(cpu_build.DTYPE_CODES)


# ---- CUDA paged decode -----------------------------------------------------------------------------
def c_heads_per_block() -> dict[int, int]:
    """heads_per_block of paged_attention.cu as a table: its `group <= a ? x : group <= b ? y : z` chain."""
    body = function_body(source("cuda/paged_attention.cu"), "int heads_per_block(int group)")
    expr = one(r"return\s+(.*?);", body, "heads_per_block").group(1)
    steps = [(int(a), int(b)) for a, b in re.findall(r"group\s*<=\s*(\d+)\s*\?\s*(\d+)\s*:", expr)]
    default = one(r":\s*(\d+)\s*$", expr, "heads_per_block default")
    assert steps, expr

    def evaluate(group: int) -> int:
        return next((heads for bound, heads in steps if group <= bound), int(default.group(1)))

    return {group: evaluate(group) for group in range(1, 129)}


def test_heads_per_block_mirrors_the_kernel():
    table = c_heads_per_block()
    assert {g: cuda_paged.heads_per_block(g) for g in table} == table


def test_heads_per_block_covers_the_kernels_instantiations():
    """Every value heads_per_block returns is a GT the dispatch switch launches (and the switch's
    default is the largest)."""
    body = function_body(source("cuda/paged_attention.cu"), "int dispatch_heads(")
    launches = switch_launches(body, "launch")
    assert all((case,) == gt for case, gt in launches.items() if case is not None)
    assert set(c_heads_per_block().values()) == {gt for (gt,) in launches.values()}
    assert launches[None] == (max(c_heads_per_block().values()),)


def test_partition_alignment_matches_the_kernel():
    """The backend rounds v2 partitions to PARTITION_ALIGN: the entry point's `% 64` check, and the
    largest token tile (kTile = 4096 / D at the smallest head dim)."""
    text = source("cuda/paged_attention.cu")
    check = one(r"partition_tokens\s*%\s*(\d+)\s*!=\s*0", text, "partition_tokens check")
    assert int(check.group(1)) == cuda_paged.PARTITION_ALIGN
    tile_bytes = int(one(r"kTile\s*=\s*(\d+)\s*/\s*D\s*;", text, "kTile").group(1))
    assert tile_bytes // min(cuda_paged.HEAD_DIMS) == cuda_paged.PARTITION_ALIGN


def test_paged_head_dims_match_the_kernel():
    text = source("cuda/paged_attention.cu")
    # both extern "C" entry points (simt and tc) check their arguments in paged_decode(Impl, ...)
    assert allowed_head_dims("int paged_decode(Impl impl,", text) == set(cuda_paged.HEAD_DIMS)
    tc = switch_launches(function_body(text, "int dispatch_tc(const PagedParams& p"), "launch_tc")
    assert {d for (d,) in tc.values()} == set(cuda_paged.HEAD_DIMS)
    launches = switch_launches(function_body(text, "int dispatch_dim(const PagedParams& p"), "dispatch_heads")
    assert all((case,) == d for case, d in launches.items() if case is not None)
    assert {d for (d,) in launches.values()} == set(cuda_paged.HEAD_DIMS)


def test_paged_block_sizes_are_ones_the_kernel_accepts():
    body = function_body(source("cuda/paged_attention.cu"), "int paged_decode(Impl impl,")
    check = one(r"block_size\s*<\s*1\s*\|\|\s*block_size\s*>\s*(\d+)\s*\|\|\s*"
                r"\(block_size\s*&\s*\(block_size\s*-\s*1\)\)\s*!=\s*0", body, "block_size check")
    largest = int(check.group(1))
    for bs in cuda_paged.BLOCK_SIZES:
        assert 1 <= bs <= largest and bs & (bs - 1) == 0, bs


# ---- CUDA flash ------------------------------------------------------------------------------------
def test_flash_head_dims_match_the_kernel():
    text = source("cuda/flash_attention.cu")
    assert allowed_head_dims("attnbench_flash_fwd", text) == set(cuda_flash.HEAD_DIMS)
    body = function_body(text, "int dispatch_dim(const FlashParams& p")
    assert {int(d) for d in re.findall(r"dispatch_config<T,\s*(\d+)>", body)} == set(cuda_flash.HEAD_DIMS)


def test_flash_configs_match_the_kernels_dispatch():
    """CONFIGS[i] names the tile shape (BM, BN, warps) `case i` of dispatch_config launches (0 = the
    default branch), and there are kNumConfigs of them."""
    text = source("cuda/flash_attention.cu")
    launches = switch_launches(function_body(text, "int dispatch_config("), "launch")
    assert 0 not in launches  # config 0 is the default branch
    shapes = {0 if case is None else case: shape for case, shape in launches.items()}
    assert constexpr_int(text, "kNumConfigs") == len(shapes) == len(cuda_flash.CONFIGS)
    assert {i: f"BM{bm} BN{bn} {w} warps" for i, (bm, bn, w) in shapes.items()} == cuda_flash.CONFIGS
    assert cuda_flash.DEFAULT_CONFIG == 0  # the kernel's default branch


# ---- CPU paged -------------------------------------------------------------------------------------
def test_cpu_limits_match_the_kernel():
    text = source("cpu/paged_attention.cpp")
    assert constexpr_int(text, "kMaxHeadDim") == cpu_paged.MAX_HEAD_DIM
    assert max(cpu_paged.BLOCK_SIZES) <= constexpr_int(text, "kMaxBlockSize")
    assert min(cpu_paged.BLOCK_SIZES) >= 1
    assert 1 <= cpu_paged.PREFILL_QUERY_TILE <= constexpr_int(text, "kMaxQueryTile")


def test_tc_heads_per_block_mirrors_the_kernel():
    """The tensor-core kernel's MMA rows (kTcRows) are the heads per block the backend sizes work by."""
    assert constexpr_int(source("cuda/paged_attention.cu"), "kTcRows") == cuda_paged.TC_HEADS_PER_BLOCK
