"""What surrounds a GPU sample without entering it: the L2 flush and the stream hold.

Stream hold (NVBench's blocking-kernel idea, done with a spin kernel): before a sample's start event, a
kernel that spins for a known time is queued, long enough for the host to queue the start event, every
launch of the callable and the end event behind it. The GPU then runs the sample's work back to back,
so the interval between the events is the device's time for the work, not the host's launch path. After
the end event is queued the host asks whether the spin has already finished: if it has, the host was
slower than the hold, a launch may have been exposed, and the sample is discarded (the hold doubles).

L2 flush: a buffer twice the L2's size written, then read. A write alone leaves dirty lines whose
write-back lands inside the next timed window (+12% measured on a 256 MB read-only kernel, +9-21% on
decode B16 context 512). A read alone leaves only clean lines but does not always evict the inputs a
sample reads again and again: on an H200 the medians of decode B16 context 512 took one of two or
three levels 2-5% apart depending on the flush buffer and the moment, the fast one with part of the
inputs still in the L2 (scripts/gpu_flush_probe.py, results/baselines/timing-check-h200/session3).
Written then read, the repetitions of one process land on one level, within 0.6-1.1%: the write
evicts every line, hot ones included, and the read takes the write-backs before the window opens.
"""

from __future__ import annotations

import torch

# Named in every row (l2_flush_kind): the gate notes a baseline taken behind another flush, whose
# levels differ by a few percent on launch-bound points, and asks for it to be re-saved.
FLUSH_KIND = "write-read"
MIN_HOLD_US = 20.0
MAX_HOLD_US = 50_000.0


class L2Flusher:
    """Reads a buffer of twice the L2's size so every sample starts with a cold, clean L2."""

    def __init__(self, device: torch.device) -> None:
        props = torch.cuda.get_device_properties(device)
        l2 = getattr(props, "L2_cache_size", 0) or 64 << 20
        # Random bytes (never zeros), written once here, long before any timed window.
        self.buffer = torch.randint(-100, 100, (2 * l2 // 4,), dtype=torch.int32, device=device)

    def __call__(self) -> None:
        self.buffer.fill_(1)  # the write evicts every line, hot ones included
        self.buffer.sum(dtype=torch.int64)  # the read writes the dirty lines back, outside the window


def spin_cycles_per_us(device: torch.device) -> float:
    """Clock cycles the spin kernel (torch.cuda._sleep) counts per microsecond on this GPU now."""
    cycles = 2_000_000
    torch.cuda._sleep(cycles // 10)  # warm the kernel up
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.cuda._sleep(cycles)
    end.record()
    end.synchronize()
    return cycles / max(start.elapsed_time(end) * 1e3, 1e-3)


class StreamHold:
    """Queues a spin of `hold_us` before a sample and tells afterwards whether it held the sample."""

    def __init__(self, device: torch.device, host_call_ms: float) -> None:
        self.cycles_per_us = spin_cycles_per_us(device)
        # Three times the host's slow (p90) call plus room for the two event records.
        self.hold_us = min(MAX_HOLD_US, max(MIN_HOLD_US, 3.0 * host_call_ms * 1e3 + 20.0))
        self.released = torch.cuda.Event()

    def hold(self) -> None:
        torch.cuda._sleep(max(1, int(self.hold_us * self.cycles_per_us)))
        self.released.record()

    def was_exposed(self) -> bool:
        """True if the spin ended before the host finished queueing the sample (ask right after)."""
        return self.released.query()

    def lengthen(self) -> bool:
        """Double the hold after an exposed sample; False once it cannot grow any more."""
        if self.hold_us >= MAX_HOLD_US:
            return False
        self.hold_us = min(MAX_HOLD_US, 2.0 * self.hold_us)
        return True
