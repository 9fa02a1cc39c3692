"""sdpa-efficient: scaled_dot_product_attention pinned to SDPBackend.EFFICIENT_ATTENTION."""

from __future__ import annotations

from attnbench.backends._sdpa import SdpaBackend
from attnbench.backends.base import register


@register
class SdpaEfficient(SdpaBackend):
    name = "sdpa-efficient"
    family = "flash"
    purpose = "xFormers memory-efficient attention inside PyTorch (SDPA)"
    memory_model = "Tiled, scores stay on chip (O(N) working memory)"
    devices = ("cuda",)
    sdpa_backend = "EFFICIENT_ATTENTION"
    takes_mask = True
    dtypes = ("bf16", "fp16", "fp32")
