"""One case from command-line flags: shared by `attnbench run` and `attnbench profile`.

The flags describe the lengths per sequence (--seqlen, --kv-len), heads, head dim, dtype, masking,
the score patterns (--window, --softcap, --alibi) and the paged-KV block size. Errors are FlagError
with a one-line message naming the flag and what is allowed; the CLI prints it and exits 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from attnbench.case import Case

# The defaults of `attnbench run` (profile fills the flags a user left out from these).
RUN_DEFAULTS: dict[str, Any] = {
    "phase": "prefill",
    "seqlen": "512",
    "kv_len": None,
    "q_heads": 32,
    "kv_heads": None,
    "head_dim": 128,
    "dtype": "bf16",
    "causal": True,
    "block_size": None,
    "kv_layout": "shuffled",
    "seed": 0,
    "window": None,
    "softcap": None,
    "alibi": False,
}


class FlagError(ValueError):
    """Flags that do not make a case; str() is the one-line message for the user."""


def _lengths(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def check_sizes(q_heads: int | None, kv_heads: int | None, head_dim: int | None,
                block_size: int | None = None) -> None:
    """FlagError for a head count, head dim or block size below 1, or KV heads that do not divide
    the query heads (each KV head serves q_heads / kv_heads query heads)."""
    for flag, value in (("--q-heads", q_heads), ("--kv-heads", kv_heads), ("--head-dim", head_dim),
                        ("--block-size", block_size)):
        if value is not None and value < 1:
            raise FlagError(f"{flag} {value}: must be an integer >= 1")
    if q_heads is not None and kv_heads is not None and q_heads % kv_heads:
        raise FlagError(f"--kv-heads {kv_heads} must divide --q-heads {q_heads} (grouped-query attention)")


def check_patterns(window: int | None, softcap: float | None) -> None:
    """FlagError for a negative --window or a --softcap that is not a finite number > 0."""
    if window is not None and window < 0:
        raise FlagError(f"--window {window}: must be a token count >= 0 (leave it out for full attention)")
    if softcap is not None and not (math.isfinite(softcap) and softcap > 0):
        raise FlagError(f"--softcap {softcap}: must be a finite number > 0 (leave it out for no soft-cap)")


def case_from_flags(
    phase: str,
    seqlen: str,
    kv_len: str | None,
    q_heads: int,
    kv_heads: int | None,
    head_dim: int,
    dtype: str,
    causal: bool,
    block_size: int | None,
    kv_layout: str,
    seed: int,
    workload: str = "cli",
    seqlen_mix: str = "list",
    window: int | None = None,
    softcap: float | None = None,
    alibi: bool = False,
) -> Case:
    """The case the flags describe.

    prefill: q_len == kv_len == each --seqlen entry (--kv-len overrides the KV lengths);
    decode: one query per sequence against --kv-len contexts (else --seqlen);
    mixed: --seqlen new tokens per sequence at the end of --kv-len contexts.
    Decode is never causal: the one query sits at the end and sees every key.
    window / softcap / alibi: the score patterns (attnbench.patterns), None / False = off.
    """
    check_sizes(q_heads, kv_heads, head_dim, block_size)
    check_patterns(window, softcap)
    if not seqlen.strip():
        raise FlagError("--seqlen is empty; give comma-separated query lengths, e.g. 512 or 1,17,129")
    if kv_len is not None and not kv_len.strip():
        raise FlagError("--kv-len is empty; give comma-separated context lengths, e.g. 4096,1000 "
                        "(or leave the flag out)")
    try:
        lens = _lengths(seqlen)
        kvs = _lengths(kv_len) if kv_len else None
    except ValueError:
        raise FlagError(
            f"--seqlen/--kv-len must be comma-separated integers, got {seqlen!r} / {kv_len!r}"
        ) from None
    if phase == "prefill":
        q_lens, kv_lens = lens, kvs or lens
    elif phase == "decode":
        kv_lens = kvs or lens
        q_lens = tuple(1 for _ in kv_lens)
    else:
        kv_lens = kvs or lens
        q_lens = lens
    if len(q_lens) != len(kv_lens):
        raise FlagError(f"--seqlen has {len(q_lens)} sequences but --kv-len has {len(kv_lens)}; "
                        "give one length per sequence")
    try:
        if min(q_lens + kv_lens) < 1:
            raise FlagError(f"--seqlen/--kv-len: every length must be >= 1, got {seqlen!r} / {kv_len!r}")
        return Case(workload, phase, q_lens, kv_lens, q_heads, q_heads if kv_heads is None else kv_heads,
                    head_dim, dtype,
                    causal if phase != "decode" else False, seqlen_mix, block_size, kv_layout, seed,
                    window=window, softcap=softcap, alibi=alibi)
    except ValueError as err:
        raise FlagError(str(err)) from None


def check_backend_names(names: Iterable[str], known: Iterable[str]) -> None:
    """Raise FlagError naming the first unknown backend and the known ones."""
    known = list(known)
    for name in names:
        if name not in known:
            raise FlagError(f"unknown backend {name!r}; known: {', '.join(known)}")
