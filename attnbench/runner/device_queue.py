"""The work the --devices workers share: one queue of case parts, with warm-up affinity.

An item is a case and some of its backends. A case's backends that need a costly first use in
every process (Backend.warmup_key; FlexAttention's torch.compile stack costs about 8.5 s in each
fresh process on an H200 host) go into an item of their own, apart from the case's other backends.
Without that, every worker would pay the warm-up on its first such point: with two workers on
configs/h100.yaml shard 1/6 that was about a third more work in all than one worker did alone.

Rules, under one lock:
- a worker first takes an item of the case it built inputs for last (they are reused, pool and
  all), else the first item in queue order it may take whose case no other worker holds, else the
  first it may take;
- an item with a warm-up key goes to a worker that has paid that warm-up, or to any when none has;
  another worker joins in only while the queued work of that key (estimated seconds, the shard
  cost model) exceeds the warm-up, so a sweep made mostly of such points still spreads out;
- a worker that died no longer counts as warmed (its items come back to the front);
- a worker leaves when the queue is empty and no worker holds an item (a held one may come back).
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field

from attnbench.backends.base import Backend
from attnbench.config.sweep_config import TimingPolicy
from attnbench.runner.plan import Plan, PlannedCase
from attnbench.runner.shard import NOMINAL, groups_of, point_s


@dataclass
class Item:
    pc: PlannedCase
    names: list[str]  # backends still to measure; the worker removes each once its row is sent
    warmup_key: str | None = None
    est_s: float = 0.0  # estimated seconds (attnbench.runner.shard.point_s), for the joining rule


class Done(enum.Enum):
    """take()'s answer when nothing is left for anybody (an enum member, so `is DONE` narrows a type)."""

    DONE = "done"


DONE = Done.DONE


@dataclass
class WorkQueue:
    warmup_s: dict[str, float]  # each warm-up key's cost
    items: list[Item] = field(default_factory=list)
    warmed: dict[str, set[str]] = field(default_factory=dict)  # key -> workers that paid it
    last_case: dict[str, str] = field(default_factory=dict)  # worker -> case_id it built last
    holding: dict[str, str] = field(default_factory=dict)  # worker -> case_id of the item it holds
    busy: int = 0  # items held by workers
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)

    def take(self, worker: str) -> Item | None | Done:
        """The next item for this worker; None: wait (work is held or reserved elsewhere); DONE."""
        with self.lock:
            if not self.items:
                return DONE if self.busy == 0 else None
            queued: dict[str, float] = {}  # estimated seconds still queued per warm-up key
            for it in self.items:
                if it.warmup_key is not None:
                    queued[it.warmup_key] = queued.get(it.warmup_key, 0.0) + it.est_s
            mine = [i for i, it in enumerate(self.items) if self._may_take(worker, it, queued)]
            if not mine:
                return None
            last = self.last_case.get(worker)
            others = {c for w, c in self.holding.items() if w != worker}
            case_of = [self.items[i].pc.case.case_id for i in mine]
            pick = next((i for i, c in zip(mine, case_of, strict=True) if c == last), None)
            if pick is None:  # rather not a case another worker is building inputs for right now
                pick = next((i for i, c in zip(mine, case_of, strict=True) if c not in others), mine[0])
            item = self.items.pop(pick)
            if item.warmup_key is not None:
                self.warmed.setdefault(item.warmup_key, set()).add(worker)
            self.last_case[worker] = self.holding[worker] = item.pc.case.case_id
            self.busy += 1
            return item

    def _may_take(self, worker: str, item: Item, queued: dict[str, float]) -> bool:
        key = item.warmup_key
        if key is None:
            return True
        paid = self.warmed.get(key, set())
        if not paid or worker in paid:
            return True
        return queued[key] > self.warmup_s.get(key, 0.0)

    def done(self, item: Item, worker: str, failed: bool = False) -> None:
        """A held item is finished, or (failed) its worker died: what is left goes back first."""
        with self.lock:
            self.busy -= 1
            self.holding.pop(worker, None)
            if failed:
                for paid in self.warmed.values():
                    paid.discard(worker)
                if item.names:
                    self.items.insert(0, item)


def queue_for(plan: Plan, policy: TimingPolicy, device: str, backends: dict[str, Backend],
              done: set[tuple[str, str]]) -> WorkQueue:
    """The plan's points not in done, as queue items: input groups longest estimated first (a
    contiguous case, then its paged variants), each case split by warm-up key."""
    nominal = NOMINAL["cpu" if device == "cpu" else "cuda"]
    q = WorkQueue({b.warmup_key: b.warmup_s for b in backends.values() if b.warmup_key})
    for g in sorted(groups_of(plan, policy, device), key=lambda g: (-g.cost_s, g.key)):
        for i in g.indices:
            pc = plan.cases[i]
            names = [b for b in pc.run if (pc.case.case_id, b) not in done]
            parts: dict[str | None, list[str]] = {}
            for name in names:
                parts.setdefault(backends[name].warmup_key, []).append(name)
            for key, part in sorted(parts.items(), key=lambda kv: kv[0] is not None):
                est = sum(point_s(pc.case, backends[n].family, policy, nominal) for n in part)
                q.items.append(Item(pc, part, key, est))
    return q
