"""sdpa-cudnn: torch.nn.functional.scaled_dot_product_attention pinned to SDPBackend.CUDNN_ATTENTION."""

from __future__ import annotations

from attnbench.backends._sdpa import SdpaBackend
from attnbench.backends.base import register


@register
class SdpaCudnn(SdpaBackend):
    name = "sdpa-cudnn"
    family = "flash"
    purpose = "cuDNN fused attention inside PyTorch (SDPA)"
    memory_model = "Tiled, scores stay on chip (O(N) working memory)"
    devices = ("cuda",)
    sdpa_backend = "CUDNN_ATTENTION"
    takes_mask = True
    dtypes = ("bf16", "fp16")
