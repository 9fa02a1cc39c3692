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


@register
class Slow(Naive):
    """Correct, but each prepare sleeps ATTNBENCH_TEST_SLOW_S seconds (default 0): a sweep to
    interrupt or kill mid-way, then resume at full speed."""

    name = "test-slow"

    def prepare(self, case, inputs):
        pid_file = os.environ.get("ATTNBENCH_TEST_PID_FILE")
        if pid_file:  # which process measures: a test checks that it ends with its parent
            with open(pid_file, "w") as f:
                f.write(str(os.getpid()))
        time.sleep(float(os.environ.get("ATTNBENCH_TEST_SLOW_S", "0")))
        return super().prepare(case, inputs)


@register
class Markup(_Fake):
    """Fails with a reason that looks like rich markup (a path in brackets)."""

    name = "test-markup"

    def prepare(self, case, inputs):
        def run():
            raise RuntimeError("cannot load [/kernels/k.so] for [p] [bold]")

        return Prepared(run=run)


@register
class SupportsRaises(Naive):
    name = "test-supports-raises"

    def supports(self, case):
        raise RuntimeError("planted supports() bug")


@register
class AvailableRaises(Naive):
    name = "test-available-raises"

    def available(self, device):
        raise RuntimeError("planted available() bug")


@register
class Segfaults(_Fake):
    name = "test-segfault"

    def prepare(self, case, inputs):
        import ctypes

        return Prepared(run=lambda: ctypes.string_at(0))
