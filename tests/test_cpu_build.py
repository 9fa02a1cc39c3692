"""The CPU kernels' build: every source compiles with warnings as errors, the cached library is keyed
by its sources, and the wheel ships the sources."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tomllib

from attnbench import cpu_build

ROOT = Path(__file__).resolve().parent.parent
needs_cxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ with OpenMP")


@needs_cxx
def test_every_cpu_source_compiles_with_warnings_as_errors():
    results = cpu_build.compile_check()
    assert [name for name, _, _ in results] == [p.name for p in cpu_build.sources()]
    assert results, "no kernels/cpu/*.cpp found"
    assert all(ok for _, ok, _ in results), "\n".join(out for _, ok, out in results if not ok)


@needs_cxx
def test_build_into_an_empty_cache_then_reuse_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNBENCH_CPU_CACHE", str(tmp_path))
    path = cpu_build.build(quiet=True)
    assert path.is_file() and path.parent.parent == tmp_path
    assert (path.parent / "build.json").is_file()
    stamp = path.stat().st_mtime_ns
    assert cpu_build.build(quiet=True) == path and path.stat().st_mtime_ns == stamp
    lib = cpu_build.CpuLib(path)
    assert lib.paged_scratch_floats(8, 2, 64, 16, 1) > 0


def test_the_cache_key_follows_every_source_and_header(tmp_path):
    for src in (ROOT / "kernels" / "cpu").iterdir():
        if src.suffix in cpu_build.SOURCE_SUFFIXES:
            (tmp_path / src.name).write_bytes(src.read_bytes())
    key = cpu_build.build_key("g++ x", tmp_path)
    assert cpu_build.build_key("g++ y", tmp_path) != key  # another compiler or CPU
    header = tmp_path / "convert.h"
    header.write_text(header.read_text() + "\n// changed\n")
    assert cpu_build.build_key("g++ x", tmp_path) != key


def test_missing_compiler_is_reported_with_the_fix(monkeypatch):
    monkeypatch.setattr(cpu_build, "find_cxx", lambda: None)
    ok, why = cpu_build.toolchain_status()
    assert not ok and "g++" in why
    with pytest.raises(cpu_build.BuildError, match="ATTNBENCH_CXX"):
        cpu_build.build()


def test_the_wheel_ships_the_cpu_kernel_sources():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "attnbench_kernels.cpu" in meta["tool"]["setuptools"]["packages"]
    data = meta["tool"]["setuptools"]["package-data"]["attnbench_kernels"]
    assert "cpu/*.cpp" in data and "cpu/*.h" in data
