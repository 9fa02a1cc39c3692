"""Compile every Triton kernel variant ahead of time for sm_80 and sm_90, without a GPU.

triton.compile with a GPUTarget runs the whole pipeline (TTIR -> TTGIR -> LLVM -> PTX -> ptxas, the
ptxas that ships in the triton wheel), so a kernel that would fail to build on the GPU fails here.
The compiles run in subprocesses without TRITON_INTERPRET (the kernels must be real JIT functions,
and other tests in this session may have set the interpreter on), one per architecture in parallel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARCHS = (80, 90)
SMEM_LIMIT = {80: 163 * 1024, 90: 227 * 1024}  # usable shared memory per block (bytes)


@pytest.fixture(scope="module")
def compiled() -> dict[int, list[dict]]:
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    procs = {
        arch: subprocess.Popen([sys.executable, "-m", "kernels.triton.aot", "--json", str(arch)], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for arch in ARCHS
    }
    results = {}
    for arch, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"sm_{arch} AOT driver crashed:\n{err[-3000:]}"
        results[arch] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert results[arch], f"sm_{arch}: nothing compiled\n{err[-2000:]}"
    return results


@pytest.mark.parametrize("arch", ARCHS)
def test_every_kernel_compiles(compiled, arch):
    failures = [f"{r['name']}: {r['error']}" for r in compiled[arch] if not r["ok"]]
    assert not failures, "\n".join(failures)
    modules = {r["module"] for r in compiled[arch]}
    assert modules == {"flash_fwd", "paged_attn"}


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_memory_fits(compiled, arch):
    ok = [r for r in compiled[arch] if r["ok"]]
    too_big = [f"{r['name']}: {r['shared']} B" for r in ok if r["shared"] > SMEM_LIMIT[arch]]
    assert not too_big, f"over the sm_{arch} shared-memory limit: {too_big}"


def test_hopper_flash_uses_wgmma_and_tma(compiled):
    flash = [r for r in compiled[90] if r["ok"] and r["module"] == "flash_fwd"]
    assert flash and all(r["wgmma"] for r in flash), "sm_90 flash variants must use wgmma"
    tma = [r for r in flash if r["tma_spec"]]
    assert tma and all(r["tma"] for r in tma), "TMA variants must issue cp.async.bulk.tensor"


def test_ampere_uses_mma_and_async_copies(compiled):
    flash = [r for r in compiled[80] if r["ok"] and r["module"] == "flash_fwd"]
    assert flash and all(r["mma"] and r["cp_async"] for r in flash)
    assert not any(r["tma_spec"] for r in compiled[80]), "TMA variants are sm_90 only"
