"""attnbench's FlashInfer calls against the REAL installed flashinfer, on a CPU (skipped without it).

tests/test_flashinfer_backend.py runs the backends on a fake module written from FlashInfer's
documentation; these tests hold the calls to the package itself: every keyword the backends pass
binds to the installed wrappers' signatures, the real wrappers' plan() and run() (JIT module
builders replaced by recorders, since kernels need nvcc and a GPU) accept attnbench's tensors and
forward its patterns, and FlashInfer's ALiBi slopes are attnbench's.
"""

from __future__ import annotations

import importlib.util
import inspect
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

flashinfer = pytest.importorskip("flashinfer")

from attnbench.backends import _flashinfer_api as api  # noqa: E402
from attnbench.backends import _flashinfer_calls as calls  # noqa: E402
from attnbench.backends import get_backend  # noqa: E402
from attnbench.case import Case  # noqa: E402
from attnbench.inputs import build_inputs  # noqa: E402
from attnbench.patterns import alibi_slopes  # noqa: E402

WRAPPERS = ("BatchDecodeWithPagedKVCacheWrapper", "BatchPrefillWithPagedKVCacheWrapper",
            "BatchPrefillWithRaggedKVCacheWrapper")
NAMES = ("flashinfer", "flashinfer-notc", "flashinfer-fa3")


def case(phase, q, kv, causal, paged, **pattern):
    c = replace(Case("fi-api", phase, q, kv, 8, 2, 64, "bf16", causal, "list"), **pattern)
    return replace(c, block_size=16, kv_layout="shuffled") if paged else c


CASES = [
    case("decode", (1, 1, 1), (40, 17, 64), False, True),
    case("decode", (1, 1), (40, 33), False, True, window=8, softcap=30.0),
    case("decode", (1, 1), (40, 33), False, True, alibi=True),
    case("prefill", (20, 7), (20, 7), True, False, window=4),
    case("prefill", (20, 7), (20, 7), True, True, softcap=20.0),
    case("mixed", (5, 3), (40, 19), True, True, alibi=True),
]


def planned_calls():
    """(name, case, inputs, path, backend) for every backend that takes a case."""
    for c in CASES:
        inputs = build_inputs(c, "cpu")
        for name in NAMES:
            b = get_backend(name)
            if b.wants(c) and b.supports(c)[0]:
                yield name, c, inputs, b.path(c), "fa3" if b.kernels == "fa3" else "fa2"


def recording_lib(log: list) -> api.FlashInferLib:
    """Wrappers that record the keywords attnbench passes (and refuse positional arguments)."""
    def wrapper(cls_name: str) -> type:
        class Recorder:
            def __init__(self, **kw: Any) -> None:
                log.append((cls_name, "__init__", kw))

            def plan(self, **kw: Any) -> None:
                log.append((cls_name, "plan", kw))

            def run(self, **kw: Any) -> torch.Tensor:
                log.append((cls_name, "run", kw))
                return kw["out"]
        return Recorder
    mod = types.SimpleNamespace(**{n: wrapper(n) for n in WRAPPERS})
    return api.FlashInferLib("recorder", mod)


def test_every_keyword_binds_to_the_installed_signatures():
    log: list = []
    lib = recording_lib(log)
    for _, c, inputs, path, backend in planned_calls():
        calls.plan_for(lib, c, inputs, path, backend).run()
    assert {cls for cls, _, _ in log} == set(WRAPPERS)
    for cls_name, method, kw in log:
        cls = getattr(flashinfer, cls_name)
        # the decode wrapper's plan() takes **kwargs and hands them to _plan_impl: bind to that
        fn = getattr(cls, "_plan_impl", None) if method == "plan" else None
        sig = inspect.signature(inspect.unwrap(fn or getattr(cls, method)))
        try:
            sig.bind(None, **kw)
        except TypeError as err:
            pytest.fail(f"{cls_name}.{method}({sorted(kw)}): {err}")


def _fake_builders(monkeypatch, log: list) -> None:
    """Replace FlashInfer's JIT module builders by recorders and its CUDA-only probes by sm_90
    answers, so the real wrappers' Python runs on a CPU."""
    dec, pre = flashinfer.decode, flashinfer.prefill
    needed = [(dec, "gen_batch_decode_module"), (pre, "gen_batch_prefill_module"),
              (pre, "_gen_batch_prefill_primary_module"),
              (pre, "_gen_batch_prefill_independent_paged_module"),
              (dec, "device_support_pdl"), (pre, "device_support_pdl")]
    if not all(hasattr(m, n) for m, n in needed):
        pytest.skip(f"flashinfer {flashinfer.__version__}: the JIT builders moved (written for 0.7.2)")

    def builder(kind: str):
        def gen(*spec: Any) -> types.SimpleNamespace:
            def rec(fn: str):
                def call(*args: Any) -> Any:
                    log.append((kind, fn, spec, args))
                    return [0] * 8 if fn == "plan" else None
                return call
            module = types.SimpleNamespace(**{f: rec(f) for f in ("plan", "run", "paged_run", "ragged_run")})
            return types.SimpleNamespace(build_and_load=lambda: module)
        return gen

    monkeypatch.setattr(dec, "gen_batch_decode_module", builder("decode"))
    monkeypatch.setattr(pre, "gen_batch_prefill_module", builder("prefill"))
    monkeypatch.setattr(pre, "_gen_batch_prefill_primary_module", builder("prefill"))
    monkeypatch.setattr(pre, "_gen_batch_prefill_independent_paged_module", builder("prefill"))
    for m in (dec, pre):
        monkeypatch.setattr(m, "device_support_pdl", lambda device: False)
        if hasattr(m, "get_compute_capability"):
            monkeypatch.setattr(m, "get_compute_capability", lambda device: (9, 0))
    empty = torch.empty

    def unpinned(*args: Any, **kw: Any) -> torch.Tensor:  # pinned host memory needs CUDA
        kw.pop("pin_memory", None)
        return empty(*args, **kw)
    monkeypatch.setattr(torch, "empty", unpinned)


def test_the_real_wrappers_take_the_tensors_and_patterns(monkeypatch):
    log: list = []
    _fake_builders(monkeypatch, log)
    lib, why = api.detect()
    assert lib is not None, why
    seen = set()
    for name, c, inputs, path, backend in planned_calls():
        log.clear()
        planned = calls.plan_for(lib, c, inputs, path, backend)
        out = planned.run()
        seen.add((name, path))
        assert out.shape == inputs.q.shape and out.dtype == inputs.q.dtype
        assert planned.wrapper._backend == backend  # nothing resolved to another kernel family
        specs = {spec for _, fn, spec, _ in log if fn == "plan"}
        assert len(specs) == 1, specs
        spec = specs.pop()
        # the module FlashInfer builds: (backend,) dtypes q/kv/o, index dtype, head dims, then
        # pos-encoding mode (2 = ALiBi), sliding window, soft-cap
        tail = spec[1:] if spec and isinstance(spec[0], str) else spec
        assert tail[:4] == (torch.bfloat16,) * 3 + (torch.int32,) and tail[4:6] == (64, 64)
        assert tail[6:9] == (2 if c.alibi else 0, c.window is not None, c.softcap is not None)
        if path in (calls.DECODE_TC, calls.DECODE_FA3, calls.PREFILL_PAGED, calls.PREFILL_RAGGED):
            assert spec[0] == backend
        runs = [args for _, fn, _, args in log if fn != "plan"]
        assert len(runs) == 1
        args = runs[0]
        assert any(a is inputs.q for a in args)
        for value in (c.window if c.window is not None else -1, c.softcap or 0.0, c.softmax_scale):
            assert value in [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    assert {n for n, _ in seen} == set(NAMES)


def test_flashinfers_alibi_slopes_are_attnbenchs():
    lib, why = api.detect()
    assert lib is not None, why
    for n in range(1, 65):
        theirs = flashinfer.utils.get_alibi_slopes(n).double()
        assert torch.allclose(theirs, torch.tensor(alibi_slopes(n), dtype=torch.float64), rtol=1e-6), n
        assert api.slopes_reason(n, lib) == ""


def test_the_jit_cache_is_where_flashinfer_builds():
    lib, _ = api.detect()
    assert lib is not None
    real = Path(flashinfer.jit.env.FLASHINFER_JIT_DIR)
    assert api.jit_dir(lib.version, lib) == real
    assert real.name == "cached_ops" and lib.version in real.parts


def test_bench_gpu_time_takes_the_cross_checks_keywords():
    from flashinfer.testing import bench_gpu_time

    path = Path(__file__).resolve().parent.parent / "scripts" / "gpu_flashinfer_check.py"
    spec = importlib.util.spec_from_file_location("gpu_flashinfer_check", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    inspect.signature(bench_gpu_time).bind(fn=lambda: None, **script.BENCH_KWARGS)
    assert script.missing_keywords(flashinfer) == {}
