"""sdpa-flash: torch.nn.functional.scaled_dot_product_attention pinned to SDPBackend.FLASH_ATTENTION."""

from __future__ import annotations

from attnbench.backends._sdpa import SdpaBackend
from attnbench.backends.base import register


@register
class SdpaFlash(SdpaBackend):
    name = "sdpa-flash"
    family = "flash"
    purpose = "FlashAttention-2 inside PyTorch (SDPA flash kernel)"
    memory_model = "Tiled, scores stay on chip (O(N) working memory)"
    devices = ("cuda",)
    sdpa_backend = "FLASH_ATTENTION"
    takes_mask = False
    dtypes = ("bf16", "fp16")
