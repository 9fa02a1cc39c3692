"""Backends that misbehave on purpose, loaded through ATTNBENCH_PLUGINS to test fault isolation."""

from __future__ import annotations

import os
import time

import torch

from attnbench.backends.base import Backend, Prepared, register
from attnbench.backends.naive import Naive


class _Fake(Backend):
    family = "naive"
    impl = "torch"
    devices = ("cpu", "cuda")

    def supports(self, case):
        return True, ""


@register
class Raises(_Fake):
    name = "test-raise"

    def prepare(self, case, inputs):
        def run():
            raise RuntimeError("planted failure")

        return Prepared(run=run)


@register
class Wrong(_Fake):
    name = "test-wrong"

    def prepare(self, case, inputs):
        return Prepared(run=lambda: torch.zeros_like(inputs.q))


@register
class Crashes(_Fake):
    name = "test-crash"

    def prepare(self, case, inputs):
        return Prepared(run=lambda: os._exit(3))


@register
class Hangs(_Fake):
    name = "test-hang"

    def prepare(self, case, inputs):
        return Prepared(run=lambda: time.sleep(3600))


@register
class Good(Naive):
    name = "test-good"
