"""The backend interface: what every attention implementation provides to the harness.

A backend states what it can run (`available`, `supports`) and turns a case and its inputs into a
zero-argument callable doing exactly the timed work (`prepare`). Everything else (inputs, KV cache,
reference, timing, telemetry) belongs to the harness, so every backend is measured the same way.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

if TYPE_CHECKING:
    import torch

    from attnbench.case import Case
    from attnbench.inputs import Inputs

FAMILIES = ("naive", "flash", "paged")
# The score patterns a case can ask for beyond causal masking (Case.window, .softcap, .alibi).
PATTERN_FEATURES = ("window", "softcap", "alibi")
IMPLS = ("torch", "triton", "cuda", "cpp", "external")


class Unsupported(Exception):
    """Raised by prepare() when a case turns out unsupported only once inputs exist."""


@dataclass
class Prepared:
    """What prepare() hands the harness.

    run: the timed work, nothing else (no allocation of inputs, no layout conversion).
    to_packed: turns run()'s return value into the packed (total_q, num_q_heads, head_dim) output
        that is compared with the reference; not timed.
    info: extra columns for the results row (variant, layout used, compile seconds, padding, ...).
    """

    run: Callable[[], Any]
    to_packed: Callable[[Any], torch.Tensor] = field(default=lambda out: out)
    info: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """One attention implementation. Subclasses set the class attributes and the three methods."""

    name: ClassVar[str]
    family: ClassVar[str]  # naive | flash | paged
    impl: ClassVar[str]  # torch | triton | cuda | external
    purpose: ClassVar[str] = ""
    memory_model: ClassVar[str] = ""
    # Which KV input the backend consumes: a contiguous packed K/V ("contiguous") or the paged
    # pool with block tables ("paged"). Backends listing both run once per KV form.
    kv_inputs: ClassVar[tuple[str, ...]] = ("contiguous",)
    devices: ClassVar[tuple[str, ...]] = ("cuda",)
    # A costly first use in every process, shared by the backends naming the same key (the
    # torch.compile stack behind FlexAttention), and its rough seconds. Scheduling only: with
    # --devices the worker that has paid it takes these backends' points (attnbench.runner.device_queue).
    warmup_key: ClassVar[str | None] = None
    warmup_s: ClassVar[float] = 0.0
    # The pattern features (PATTERN_FEATURES) the backend implements. A case asking for one that is
    # not listed is skipped with the reason before the backend's own supports() is asked, so a
    # backend that knows nothing of patterns can never run a windowed case as a full one.
    patterns: ClassVar[frozenset[str]] = frozenset()
    # The KV-cache storage types (attnbench.case.KV_DTYPES) the backend reads. A quantised case (fp8 K/V
    # with scales in Inputs.k_scale / v_scale) is skipped with the reason before supports() is asked
    # unless its kv_dtype is listed, so a backend that knows nothing of fp8 (the CUDA kernels, a plugin)
    # never gets float8 tensors. kv_dtype_note: why not, appended to that reason where it helps.
    kv_dtypes: ClassVar[frozenset[str]] = frozenset({"auto"})
    kv_dtype_note: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("supports")
        if own is not None and not getattr(own, "_checks_patterns", False):
            cls.supports = _with_pattern_check(own)  # type: ignore[method-assign]

    def available(self, device: str) -> tuple[bool, str]:
        """Whether the backend can run at all on this device type (imports, hardware, compiler)."""
        if device not in self.devices:
            return False, f"runs on {'/'.join(self.devices)} only, not {device}"
        return True, ""

    @abstractmethod
    def supports(self, case: Case) -> tuple[bool, str]:
        """Whether this case is within what the backend implements; the reason names the limit."""

    @abstractmethod
    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        """Build the timed callable. Layout conversions and compilation happen here, untimed."""

    def wants(self, case: Case) -> bool:
        """Whether a planned case is meant for this backend (paged cases for paged consumers)."""
        return ("paged" if case.paged else "contiguous") in self.kv_inputs


def case_features(case: Case) -> tuple[str, ...]:
    """The pattern features a case uses, in PATTERN_FEATURES order."""
    used = {"window": case.window is not None, "softcap": case.softcap is not None, "alibi": case.alibi}
    return tuple(f for f in PATTERN_FEATURES if used[f])


# A backend's own supports(self, case); the wrapper below has its signature (functools.wraps).
_Supports = TypeVar("_Supports", bound="Callable[[Any, Case], tuple[bool, str]]")


def kv_dtype_reason(backend: Backend, case: Case) -> str:
    """Why the backend cannot read the case's KV storage ("" when it can)."""
    if case.kv_dtype in type(backend).kv_dtypes:
        return ""
    note = type(backend).kv_dtype_note
    return f"kv_dtype {case.kv_dtype}: not supported by {backend.name}" + (f" ({note})" if note else "")


def _with_pattern_check(supports: _Supports) -> _Supports:
    """supports() behind the checks every backend shares: the pattern features, then the KV storage."""
    @functools.wraps(supports)
    def checked(self: Backend, case: Case) -> tuple[bool, str]:
        missing = [f for f in case_features(case) if f not in type(self).patterns]
        if missing:
            return False, f"no {'/'.join(missing)} pattern in this backend"
        kv_why = kv_dtype_reason(self, case)
        if kv_why:
            return False, kv_why
        return supports(self, case)

    checked._checks_patterns = True  # type: ignore[attr-defined]
    return cast(_Supports, checked)


_REGISTRY: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator adding a backend to the registry under its name."""
    if cls.family not in FAMILIES:
        raise ValueError(f"{cls.__name__}: family {cls.family!r} not in {FAMILIES}")
    if cls.impl not in IMPLS:
        raise ValueError(f"{cls.__name__}: impl {cls.impl!r} not in {IMPLS}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"backend {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Backend]]:
    return _REGISTRY
