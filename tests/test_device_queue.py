"""The --devices work queue: case parts, input reuse and warm-up affinity (attnbench.runner.device_queue)."""

from __future__ import annotations

from types import SimpleNamespace

from attnbench.backends import all_backends
from attnbench.backends.naive import Naive
from attnbench.config.sweep_config import parse_config
from attnbench.runner.device_queue import DONE, Item, WorkQueue, queue_for
from attnbench.runner.plan import build_plan


def _item(case_id: str, names: list[str], key: str | None = None, est: float = 1.0) -> Item:
    pc = SimpleNamespace(case=SimpleNamespace(case_id=case_id))
    return Item(pc, list(names), key, est)  # type: ignore[arg-type]


def _finish(q: WorkQueue, item: Item, worker: str) -> None:
    item.names.clear()
    q.done(item, worker)


def test_the_warmed_worker_takes_the_warm_up_parts_and_reuses_its_inputs():
    q = WorkQueue({"compile": 8.5}, [_item("A", ["naive"]), _item("A", ["flex"], "compile"),
                                     _item("B", ["naive"]), _item("B", ["flex"], "compile")])
    a = q.take("0")
    b = q.take("1")
    # worker 1 does not build A's inputs while worker 0 holds A: it starts on B
    assert (a.pc.case.case_id, a.names, b.pc.case.case_id, b.names) == ("A", ["naive"], "B", ["naive"])
    _finish(q, a, "0")
    a2 = q.take("0")  # A again (its inputs are at hand), the warm-up part: worker 0 pays the warm-up
    assert (a2.pc.case.case_id, a2.warmup_key) == ("A", "compile")
    _finish(q, b, "1")
    # B's warm-up part is worth 1 s, far below the 8.5 s warm-up: worker 1 leaves it to worker 0
    assert q.take("1") is None
    _finish(q, a2, "0")
    b2 = q.take("0")
    assert (b2.pc.case.case_id, b2.warmup_key) == ("B", "compile")
    assert q.take("1") is None  # nothing to take, but B's part is still held: it might come back
    _finish(q, b2, "0")
    assert q.take("0") is DONE and q.take("1") is DONE


def test_a_second_worker_joins_when_the_warm_up_work_outweighs_the_warm_up():
    q = WorkQueue({"compile": 8.5}, [_item(c, ["flex"], "compile", est=4.0) for c in "ABCD"])
    first = q.take("0")
    second = q.take("1")  # 12 s of compile-stack points still queued > 8.5 s: worth a second warm-up
    assert first.pc.case.case_id == "A" and second.pc.case.case_id == "B"
    assert q.warmed["compile"] == {"0", "1"}
    q2 = WorkQueue({"compile": 8.5}, [_item(c, ["flex"], "compile", est=4.0) for c in "AB"])
    q2.take("0")
    assert q2.take("1") is None  # 4 s left: not worth it


def test_a_dead_workers_part_comes_back_first_and_its_warm_up_no_longer_counts():
    q = WorkQueue({"compile": 8.5}, [_item("A", ["flex", "flex-paged"], "compile"), _item("B", ["naive"])])
    held = q.take("0")
    held.names.remove("flex")  # its first row was sent, then the worker died
    q.done(held, "0", failed=True)
    assert q.warmed["compile"] == set()
    back = q.take("1")
    assert (back.pc.case.case_id, back.names) == ("A", ["flex-paged"])


class _WarmNaive(Naive):
    warmup_key = "test-warm-up"
    warmup_s = 5.0


def test_queue_for_splits_each_case_by_warm_up_key_and_skips_done_points():
    cfg = parse_config("""
name: q
device: cpu
workloads:
  - name: p
    phase: prefill
    batch: [1, 2]
    lengths: ["fixed:16"]
    q_heads: [2]
    kv_heads: [2]
    head_dim: [16]
    dtype: [fp32]
""")
    plan = build_plan(cfg, "cpu", ["naive", "sdpa-math"])
    backends = {**all_backends(), "naive": _WarmNaive()}
    first = plan.cases[0].case.case_id
    q = queue_for(plan, cfg.timing_policy("cpu"), "cpu", backends, done={(first, "sdpa-math")})
    parts = [(it.pc.case.case_id, it.names, it.warmup_key) for it in q.items]
    assert sorted(parts, key=repr) == sorted([
        (first, ["naive"], "test-warm-up"),
        (plan.cases[1].case.case_id, ["sdpa-math"], None),
        (plan.cases[1].case.case_id, ["naive"], "test-warm-up"),
    ], key=repr)
    # a case's plain part comes before its warm-up part; every part has an estimate
    assert all(it.est_s > 0 for it in q.items) and q.warmup_s["test-warm-up"] == 5.0
    second = [it.warmup_key for it in q.items if it.pc.case.case_id == plan.cases[1].case.case_id]
    assert second == [None, "test-warm-up"]
