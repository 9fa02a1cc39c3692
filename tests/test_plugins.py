"""Backends from the `attnbench.backends` entry-point group, through the public plugin API."""

from __future__ import annotations

import re
import sys
import textwrap

import pytest

import attnbench.backends as backends_pkg
from attnbench.backends._plugins import GROUP
from attnbench.backends.base import registry

PLUGIN = '''
from attnbench.plugin import Backend, Prepared, keep_mask, register, padded_qkv, unpad


class EpNaive(Backend):
    name = "ep-naive"
    family = "naive"
    impl = "external"
    purpose = "entry-point test backend"
    devices = ("cpu",)

    def supports(self, case):
        return True, ""

    def prepare(self, case, inputs):
        import torch

        pq = padded_qkv(case, inputs)
        g = case.gqa_ratio
        mask = keep_mask(case, pq.q.device)  # the padded keys of shorter sequences are masked out

        def run():
            k = pq.k.repeat_interleave(g, dim=1)
            v = pq.v.repeat_interleave(g, dim=1)
            return torch.nn.functional.scaled_dot_product_attention(pq.q, k, v, attn_mask=mask)

        return Prepared(run=run, to_packed=lambda out: unpad(out, case.q_lens))
'''


def _install(tmp_path, value: str, body: str = PLUGIN) -> None:
    (tmp_path / "ep_test_plugin.py").write_text(body)
    dist = tmp_path / "ep_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(f"""\
        [{GROUP}]
        ep-naive = {value}
        """))


@pytest.fixture
def fresh_registry(monkeypatch, tmp_path):
    backends_pkg.all_backends()  # the built-in backends registered before the snapshot
    saved = dict(registry())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(backends_pkg, "_loaded", False)
    yield
    registry().clear()
    registry().update(saved)
    sys.modules.pop("ep_test_plugin", None)
    backends_pkg._loaded = False


def test_entry_point_class_is_registered_and_runs(tmp_path, fresh_registry):
    _install(tmp_path, "ep_test_plugin:EpNaive")
    every = backends_pkg.all_backends()
    assert "ep-naive" in every and every["ep-naive"].impl == "external"
    from attnbench.case_flags import case_from_flags
    from attnbench.config.sweep_config import TimingPolicy
    from attnbench.runner.worker import LocalExecutor, Task

    case = case_from_flags("decode", "24,40", None, 4, 2, 16, "fp32", False, None, "shuffled", 0)
    (row,) = LocalExecutor("cpu", TimingPolicy.for_device("cpu")).run(
        Task(case, ["ep-naive"]), lambda n: None, lambda n, r: {}
    )
    assert row["status"] == "ok", row.get("reason")  # checked against the reference like any backend
    assert row["impl"] == "external" and row["latency_ms_p50"] > 0


def test_entry_point_module_registering_itself(tmp_path, fresh_registry):
    _install(tmp_path, "ep_test_plugin", PLUGIN.replace("class EpNaive", "@register\nclass EpNaive"))
    assert "ep-naive" in backends_pkg.all_backends()


def test_broken_entry_point_names_itself(tmp_path, fresh_registry):
    """Like a bad ATTNBENCH_PLUGINS module: one warning naming it and the cause; the built-in backends
    and every command still work."""
    _install(tmp_path, "ep_test_plugin", "raise RuntimeError('no kernel here')\n")
    names = backends_pkg.all_backends()
    assert "naive" in names and "ep-naive" not in names
    problems = backends_pkg.plugin_problems()
    assert len(problems) == 1 and re.search("backend plugin 'ep-naive'.*no kernel here", problems[0])


def test_plugin_api_exports_what_docs_promise():
    import attnbench.plugin as api

    doc = (__import__("pathlib").Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
    for name in api.__all__:
        assert getattr(api, name) is not None
        assert f"`{name}" in doc or name in doc, name
