"""CUDA build plumbing and the CUDA backends' CPU-side logic (no GPU needed).

The compile check (every .cu for sm_80 and sm_90a with warnings as errors) and the build + ctypes
load run only where nvcc exists; launch functions validate their arguments before touching the GPU,
so the loaded library's error path is testable here too.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from attnbench import cuda_build, cuda_lib
from attnbench.backends.cuda_flash import CudaFlash
from attnbench.backends.cuda_paged import (
    CudaPaged,
    choose_variant,
    heads_per_block,
    partition_tokens,
    work_items,
)
from attnbench.case import Case

HAS_NVCC = cuda_build.find_nvcc() is not None
needs_nvcc = pytest.mark.skipif(not HAS_NVCC, reason="nvcc not found (CUDA toolkit not installed)")


def decode_case(**kw) -> Case:
    base = dict(
        workload="t",
        phase="decode",
        q_lens=(1, 1),
        kv_lens=(100, 7),
        num_q_heads=8,
        num_kv_heads=2,
        head_dim=128,
        dtype="bf16",
        causal=True,
        block_size=16,
    )
    base.update(kw)
    return Case(**base)


def prefill_case(**kw) -> Case:
    base = dict(
        workload="t",
        phase="prefill",
        q_lens=(64, 9),
        kv_lens=(64, 9),
        num_q_heads=8,
        num_kv_heads=2,
        head_dim=128,
        dtype="bf16",
        causal=True,
    )
    base.update(kw)
    return Case(**base)


# ---- arch and flags ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cap, arch",
    [((8, 0), "sm_80"), ((8, 6), "sm_86"), ((8, 9), "sm_89"), ((9, 0), "sm_90a"), ((10, 0), "sm_100")],
)
def test_arch_for_capability(cap, arch):
    assert cuda_build.arch_for_capability(*cap) == arch


def test_arch_before_ampere_is_refused():
    with pytest.raises(cuda_build.BuildError, match="sm_80 or newer"):
        cuda_build.arch_for_capability(7, 5)


def test_gencode_names_the_arch_specific_target():
    assert cuda_build.gencode("sm_90a") == ["-gencode=arch=compute_90a,code=sm_90a"]
    assert cuda_build.gencode("sm_80") == ["-gencode=arch=compute_80,code=sm_80"]
    with pytest.raises(cuda_build.BuildError, match="expected sm_XY"):
        cuda_build.gencode("hopper")


def test_detect_arch_honours_env(monkeypatch):
    monkeypatch.setenv("ATTNBENCH_CUDA_ARCH", "sm_89")
    assert cuda_build.detect_arch() == "sm_89"


# ---- cache key --------------------------------------------------------------------------------------
def test_build_key_tracks_sources_arch_and_compiler(tmp_path: Path):
    src = tmp_path / "cuda"
    shutil.copytree(cuda_build.cuda_src_dir(), src, ignore=shutil.ignore_patterns("__pycache__"))
    key = cuda_build.build_key("sm_90a", "nvcc 13.0", src)
    assert key == cuda_build.build_key("sm_90a", "nvcc 13.0", src)  # deterministic
    assert key != cuda_build.build_key("sm_80", "nvcc 13.0", src)
    assert key != cuda_build.build_key("sm_90a", "nvcc 12.8", src)
    header = src / "common.cuh"
    header.write_text(header.read_text() + "\n// edited\n")  # a header change must rebuild too
    assert key != cuda_build.build_key("sm_90a", "nvcc 13.0", src)


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNBENCH_CUDA_CACHE", str(tmp_path))
    assert cuda_build.cache_root() == tmp_path


# ---- no compiler ------------------------------------------------------------------------------------
def test_without_nvcc_backends_say_so(monkeypatch, tmp_path):
    monkeypatch.setattr(cuda_build, "find_nvcc", lambda: None)
    for backend in (CudaPaged(), CudaFlash()):
        ok, reason = backend.available("cuda")
        assert not ok and "nvcc" in reason and "make kernels" in reason
    with pytest.raises(cuda_build.BuildError, match="nvcc not found"):
        cuda_build.build("sm_90a")
    assert cuda_build.main(["check"]) == 1


def test_backends_refuse_cpu():
    for backend in (CudaPaged(), CudaFlash()):
        ok, reason = backend.available("cpu")
        assert not ok and "cuda" in reason


# ---- what the backends accept -------------------------------------------------------------------------
def test_paged_backend_declaration():
    b = CudaPaged()
    assert (b.family, b.impl, b.kv_inputs, b.devices) == ("paged", "cuda", ("paged",), ("cuda",))
    f = CudaFlash()
    assert (f.family, f.impl, f.kv_inputs, f.devices) == ("flash", "cuda", ("contiguous",), ("cuda",))


@pytest.mark.parametrize("bs", [8, 16, 32, 64, 128])
@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_paged_supports_its_range(bs, d, dtype):
    assert CudaPaged().supports(decode_case(block_size=bs, head_dim=d, dtype=dtype)) == (True, "")


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(phase="mixed", q_lens=(4, 1), kv_lens=(100, 7)), "decode only"),
        (dict(head_dim=96), "allowed 64, 128, 256"),
        (dict(block_size=12), "allowed 8, 16, 32, 64, 128"),
        (dict(dtype="fp32"), "allowed fp16, bf16"),
        (dict(block_size=None), "paged KV cache"),
    ],
)
def test_paged_refusals_name_what_is_allowed(kw, words):
    ok, reason = CudaPaged().supports(decode_case(**kw))
    assert not ok and words in reason


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(phase="decode", q_lens=(1, 1)), "decode: use cuda-paged"),
        (dict(head_dim=256), "allowed 64, 128"),
        (dict(dtype="fp32"), "allowed fp16, bf16"),
        (dict(block_size=16), "contiguous K/V"),
    ],
)
def test_flash_refusals_name_what_is_allowed(kw, words):
    ok, reason = CudaFlash().supports(prefill_case(**kw))
    assert not ok and words in reason


def test_flash_supports_prefill_and_chunked_prefill():
    assert CudaFlash().supports(prefill_case(head_dim=64, dtype="fp16", causal=False))[0]
    assert CudaFlash().supports(prefill_case(phase="mixed", q_lens=(8, 9), kv_lens=(64, 9)))[0]


# ---- v1 / v2 choice -----------------------------------------------------------------------------------
def test_heads_per_block_rounds_group_up_to_power_of_two_capped_at_8():
    assert [heads_per_block(g) for g in (1, 2, 3, 4, 6, 8, 16)] == [1, 2, 4, 4, 8, 8, 8]
    assert work_items(4, 32, 2) == 4 * 2 * 2  # group 16: two blocks per KV head
    assert work_items(4, 32, 2, impl="tc") == 4 * 2  # tensor cores: 16 heads are one block's MMA rows
    assert work_items(4, 64, 2, impl="tc") == 4 * 2 * 2  # group 32: two blocks
    assert [heads_per_block(g, "tc") for g in (1, 4, 16, 32)] == [1, 4, 16, 16]


def test_variant_choice():
    slots = 132 * 4
    assert choose_variant(work_items(64, 32, 8), 4096, slots) == "v1"  # 512 blocks fill the GPU once
    assert choose_variant(work_items(4, 32, 8), 32768, slots) == "v2"  # 32 blocks would idle 100 SMs
    assert choose_variant(work_items(4, 32, 8), 512, slots) == "v1"  # too short to split
    assert choose_variant(work_items(64, 32, 8), 4096, slots, override="v2") == "v2"
    with pytest.raises(ValueError, match="allowed v1, v2"):
        choose_variant(1, 1, 1, override="v3")


def test_partition_fills_the_slots_in_one_wave():
    slots, work = 132 * 4, work_items(4, 32, 8)
    tokens = partition_tokens(work, 32768, slots)
    parts = -(-32768 // tokens)
    assert tokens % 64 == 0 and tokens >= 256
    assert work * parts <= slots  # no second, mostly empty wave
    assert partition_tokens(work, 300, slots) == 256  # floor: a partition holds several tiles


# ---- compile check and build (need nvcc, not a GPU) -------------------------------------------------------
# A stand-in nvcc: it logs each command line and writes its -o file; with -Werror it fails on the
# sources named in FAKE_NVCC_WARN, as the real one does on a warning.
FAKE_NVCC = """
import json, os, sys
args = sys.argv[1:]
if args == ["--version"]:
    print("Cuda compilation tools, release 99.0, V99.0.0")
    sys.exit(0)
with open(os.environ["FAKE_NVCC_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
src = next((a for a in args if a.endswith(".cu")), None)
if src and "-Werror" in args and os.path.basename(src) in os.environ.get("FAKE_NVCC_WARN", "").split(","):
    print(src + "(1): warning #177-D: variable was declared but never referenced", file=sys.stderr)
    sys.exit(1)
with open(args[args.index("-o") + 1], "w") as out:
    out.write("object" if src else "library")
"""


@pytest.fixture()
def fake_nvcc(monkeypatch, tmp_path):
    """(the fake nvcc's path, a function that returns and forgets the command lines it ran), with an
    empty build cache."""
    nvcc = tmp_path / "nvcc"
    nvcc.write_text(f"#!{sys.executable}\n{FAKE_NVCC}")
    nvcc.chmod(0o755)
    log = tmp_path / "nvcc.log"
    monkeypatch.setenv("FAKE_NVCC_LOG", str(log))
    monkeypatch.setenv("ATTNBENCH_CUDA_CACHE", str(tmp_path / "cache"))

    def calls() -> list[list[str]]:
        lines = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return [json.loads(line) for line in lines]

    return str(nvcc), calls


def _compiled(calls: list[list[str]]) -> list[tuple[str, str, bool]]:
    """(source, gencode target, with -Werror) of each compile command, sorted."""
    return sorted(
        (Path(c[c.index("-c") + 1]).name, next(a for a in c if a.startswith("-gencode")), "-Werror" in c)
        for c in calls
        if "-c" in c
    )


def test_the_check_and_the_build_compile_each_source_once(fake_nvcc, capsys):
    nvcc, calls = fake_nvcc
    names = [s.name for s in cuda_build.sources()]
    sm80, sm90a = cuda_build.gencode("sm_80")[0], cuda_build.gencode("sm_90a")[0]

    results = cuda_build.compile_check(nvcc=nvcc)
    assert [(r.source, r.arch, r.ok, r.cached) for r in results] == [
        (n, a, True, False) for a in cuda_build.CHECK_ARCHS for n in names
    ]
    assert _compiled(calls()) == sorted((n, g, True) for n in names for g in (sm80, sm90a))
    again = cuda_build.compile_check(nvcc=nvcc)  # the same sources, flags and compilers: nothing to compile
    assert all(r.ok and r.cached for r in again) and len(again) == len(results)
    assert calls() == []

    capsys.readouterr()
    path = cuda_build.build("sm_80", nvcc=nvcc)  # links the checked objects, compiles nothing
    assert f"linking {len(names)} cached objects for sm_80" in capsys.readouterr().err
    (link,) = calls()
    assert "-shared" in link and sorted(Path(a).name for a in link if a.endswith(".o")) == sorted(
        n.replace(".cu", ".o") for n in names
    )
    assert path.read_text() == "library" and path.parent == cuda_build.build_dir("sm_80", nvcc)
    assert cuda_build.build("sm_80", nvcc=nvcc) == path  # cached: no second build, no message
    assert calls() == [] and capsys.readouterr().err == ""

    # An arch nobody checked: the build compiles every source without -Werror (the library must
    # build on a compiler that warns), and a later check of it still compiles each with -Werror.
    cuda_build.build("sm_86", nvcc=nvcc)
    assert f"compiling {len(names)} CUDA sources for sm_86" in capsys.readouterr().err
    sm86 = cuda_build.gencode("sm_86")[0]
    assert _compiled(calls()) == sorted((n, sm86, False) for n in names)
    assert all(r.ok and not r.cached for r in cuda_build.compile_check(("sm_86",), nvcc=nvcc))
    assert _compiled(calls()) == sorted((n, sm86, True) for n in names)


def test_a_warning_fails_the_check_each_time_and_the_build_still_compiles(fake_nvcc, monkeypatch, capsys):
    nvcc, calls = fake_nvcc
    names = [s.name for s in cuda_build.sources()]
    warns = names[0]
    monkeypatch.setenv("FAKE_NVCC_WARN", warns)
    sm80 = cuda_build.gencode("sm_80")[0]

    first = {r.source: r for r in cuda_build.compile_check(("sm_80",), nvcc=nvcc)}
    assert not first[warns].ok and "warning #177-D" in first[warns].output
    assert all(first[n].ok for n in names if n != warns)
    calls()
    second = {r.source: r for r in cuda_build.compile_check(("sm_80",), nvcc=nvcc)}
    assert not second[warns].ok and not second[warns].cached  # a failure is never remembered as a pass
    assert all(second[n].cached for n in names if n != warns)
    assert _compiled(calls()) == [(warns, sm80, True)]
    monkeypatch.setattr(cuda_build, "find_nvcc", lambda: nvcc)
    capsys.readouterr()
    assert cuda_build.main(["check", "--arch", "sm_80"]) == 1  # what `make kernels-check` prints
    out = capsys.readouterr().out.splitlines()
    assert f"FAIL {warns} sm_80" in out and f"ok   {names[1]} sm_80 (passed before: cached)" in out
    calls()

    cuda_build.build("sm_80", nvcc=nvcc)  # the object that failed the check is compiled, without -Werror
    assert "compiling 1 CUDA sources for sm_80" in capsys.readouterr().err
    assert _compiled(calls()) == [(warns, sm80, False)]


@needs_nvcc
def test_every_source_compiles_warning_free_for_sm80_and_sm90a():
    results = cuda_build.compile_check()
    assert {r.arch for r in results} == set(cuda_build.CHECK_ARCHS)
    assert len(results) == len(cuda_build.sources()) * len(cuda_build.CHECK_ARCHS)
    failed = [f"{r.source} {r.arch}:\n{r.output}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)


@needs_nvcc
def test_build_caches_and_library_rejects_bad_arguments(capsys):
    # The build in the shared cache links the objects the compile check left (the check returns at
    # once after the test above, which make test's pytest-xdist runs before this one, in the same
    # worker: --dist loadfile); the fake-nvcc tests above pin what is compiled when.
    cuda_build.compile_check(("sm_80",))
    path = cuda_build.build("sm_80")
    assert path.is_file() and path.parent.parent == cuda_build.cache_root()
    capsys.readouterr()
    assert cuda_build.build("sm_80") == path  # cached: no second build
    assert capsys.readouterr().err == ""
    lib = cuda_lib.CudaLib(path)
    assert lib.flash_num_configs >= 1
    # Arguments are validated before any CUDA call, so this runs without a GPU.
    with pytest.raises(cuda_lib.KernelError, match="head_dim 96: allowed 64, 128, 256"):
        lib.paged_decode(
            out=0,
            q=0,
            k_cache=0,
            v_cache=0,
            block_tables=0,
            kv_lens=0,
            batch=1,
            num_q_heads=4,
            num_kv_heads=1,
            head_dim=96,
            block_size=16,
            table_stride=1,
            dtype=1,
            scale=0.1,
        )
    with pytest.raises(cuda_lib.KernelError, match="block_size 12"):
        lib.paged_decode(
            out=0,
            q=0,
            k_cache=0,
            v_cache=0,
            block_tables=0,
            kv_lens=0,
            batch=1,
            num_q_heads=4,
            num_kv_heads=1,
            head_dim=128,
            block_size=12,
            table_stride=1,
            dtype=1,
            scale=0.1,
        )
    with pytest.raises(cuda_lib.KernelError, match="config 99"):
        lib.flash_fwd(
            out=0,
            q=0,
            k=0,
            v=0,
            cu_q=0,
            cu_k=0,
            batch=1,
            max_q_len=3,
            num_q_heads=4,
            num_kv_heads=1,
            head_dim=128,
            dtype=1,
            causal=True,
            scale=0.1,
            config=99,
        )
