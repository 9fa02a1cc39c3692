"""sdpa-math: torch.nn.functional.scaled_dot_product_attention pinned to SDPBackend.MATH."""

from __future__ import annotations

from attnbench.backends._sdpa import SdpaBackend
from attnbench.backends.base import register


@register
class SdpaMath(SdpaBackend):
    name = "sdpa-math"
    family = "naive"
    purpose = "PyTorch SDPA's composite math path (reference)"
    memory_model = "Materialised N x N scores (O(N^2) working memory)"
    devices = ("cpu", "cuda")
    sdpa_backend = "MATH"
    takes_mask = True
    dtypes = ("bf16", "fp16", "fp32")
    # Window and ALiBi as an additive bias; SDPA has no hook for a soft-cap on the scores.
    patterns = frozenset({"window", "alibi"})
