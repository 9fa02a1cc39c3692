"""Seeded sequence-length mixes: how long each sequence of a batch is.

A mix is written in a config as a string ("fixed:512", "uniform:64-2048", "sharegpt") or a mapping
({dist: lognormal, mean: 1024, sigma: 0.8, max: 8192}). Variable-length batches are the point:
paged and varlen kernels take them as they are, padded baselines pay for padding.

For prefill a mix gives the prompt lengths; for decode it gives the context lengths (for the
dataset presets: the prompt plus a uniformly drawn share of the output already generated, i.e. a
request caught mid-generation); for mixed (chunked prefill) it gives the context lengths too.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DISTS = ("fixed", "uniform", "lognormal", "bimodal", "sharegpt", "alpaca", "list")
_PARAMS: dict[str, dict[str, type]] = {
    "fixed": {"len": int},
    "uniform": {"min": int, "max": int},
    "lognormal": {"mean": float, "sigma": float, "max": int, "min": int},
    "bimodal": {"short": int, "long": int, "p_long": float},
    "sharegpt": {"max": int},
    "alpaca": {"max": int},
    "list": {"lens": list},
}
_REQUIRED = {
    "fixed": {"len"},
    "uniform": {"min", "max"},
    "lognormal": {"mean", "sigma", "max"},
    "bimodal": {"short", "long", "p_long"},
    "sharegpt": set(),
    "alpaca": set(),
    "list": {"lens"},
}


class MixError(ValueError):
    """A mix spec that cannot be used; the message names the key and what is allowed."""


@dataclass(frozen=True)
class LengthMix:
    dist: str
    params: tuple[tuple[str, Any], ...] = field(default=())

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    @property
    def label(self) -> str:
        p = dict(self.params)
        if self.dist == "fixed":
            return f"fixed{p['len']}"
        if self.dist == "uniform":
            return f"uniform{p['min']}-{p['max']}"
        if self.dist == "lognormal":
            return f"lognormal{p['mean']:g}s{p['sigma']:g}"
        if self.dist == "bimodal":
            return f"bimodal{p['short']}-{p['long']}p{p['p_long']:g}"
        if self.dist == "list":
            return "list"
        return self.dist

    def sample(self, batch: int, rng: np.random.Generator, phase: str = "prefill") -> tuple[int, ...]:
        """Lengths for a batch; deterministic for the generator's seed."""
        p = dict(self.params)
        if self.dist == "fixed":
            lens = np.full(batch, p["len"])
        elif self.dist == "list":
            base = list(p["lens"])
            lens = np.array([base[i % len(base)] for i in range(batch)])
        elif self.dist == "uniform":
            lens = rng.integers(p["min"], p["max"] + 1, size=batch)
        elif self.dist == "lognormal":
            # mean is the mean length in tokens: mu = ln(mean) - sigma^2 / 2 for a lognormal.
            mu = math.log(p["mean"]) - p["sigma"] ** 2 / 2
            lens = np.clip(np.rint(rng.lognormal(mu, p["sigma"], size=batch)), p.get("min", 1), p["max"])
        elif self.dist == "bimodal":
            is_long = rng.random(batch) < p["p_long"]
            lens = np.where(is_long, p["long"], p["short"])
        else:  # dataset presets
            from attnbench.memory import length_dists

            sampler = (
                length_dists.sharegpt_lengths if self.dist == "sharegpt" else length_dists.alpaca_lengths
            )
            prompt, output = sampler(batch, rng)
            prompt = np.asarray(prompt)
            output = np.asarray(output)
            if phase == "prefill":
                lens = prompt
            else:
                lens = prompt + np.floor(rng.random(batch) * output).astype(int)
            lens = np.clip(lens, 1, p.get("max", 2048))
        return tuple(int(x) for x in np.maximum(lens, 1))


def parse_mix(spec: Any) -> LengthMix:
    """A mix from its config form. Raises MixError naming the problem and what is allowed."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        return LengthMix("fixed", (("len", spec),))
    if isinstance(spec, str):
        return _parse_mix_string(spec)
    if isinstance(spec, dict):
        d = dict(spec)
        dist = d.pop("dist", None)
        if dist not in DISTS:
            raise MixError(f"dist {dist!r} is not one of {', '.join(DISTS)}")
        allowed = _PARAMS[dist]
        unknown = set(d) - set(allowed)
        if unknown:
            raise MixError(
                f"unknown key {sorted(unknown)[0]!r} for dist {dist}; allowed: {', '.join(allowed)}"
            )
        missing = _REQUIRED[dist] - set(d)
        if missing:
            raise MixError(f"dist {dist} needs {', '.join(sorted(missing))}")
        params = []
        for key, value in d.items():
            params.append((key, _coerce(dist, key, value, allowed[key])))
        mix = LengthMix(dist, tuple(sorted(params)))
        _check_ranges(mix)
        return mix
    raise MixError(f"a length mix is an int, a string like 'fixed:512' or a mapping with dist; got {spec!r}")


def _coerce(dist: str, key: str, value: Any, kind: type) -> Any:
    if kind is list:
        if not isinstance(value, list) or not value or not all(isinstance(x, int) and x > 0 for x in value):
            raise MixError(f"{dist}.{key} must be a non-empty list of positive ints, got {value!r}")
        return tuple(value)
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise MixError(f"{dist}.{key} must be an int, got {value!r}")
    if kind is float and (not isinstance(value, (int, float)) or isinstance(value, bool)
                          or not math.isfinite(value)):
        raise MixError(f"{dist}.{key} must be a finite number, got {value!r}")
    return kind(value)


def _check_ranges(mix: LengthMix) -> None:
    p = dict(mix.params)
    for key in ("len", "min", "max", "short", "long", "mean"):
        if key in p and p[key] < 1:
            raise MixError(f"{mix.dist}.{key} must be >= 1, got {p[key]}")
    if mix.dist == "uniform" and p["min"] > p["max"]:
        raise MixError(f"uniform.min {p['min']} is larger than uniform.max {p['max']}")
    if mix.dist == "bimodal" and p["short"] > p["long"]:
        raise MixError(f"bimodal.short {p['short']} is larger than bimodal.long {p['long']}")
    if mix.dist == "bimodal" and not 0.0 <= p["p_long"] <= 1.0:
        raise MixError(f"bimodal.p_long must be within [0, 1], got {p['p_long']}")
    if mix.dist == "lognormal" and p["sigma"] <= 0:
        raise MixError(f"lognormal.sigma must be > 0, got {p['sigma']}")


def _parse_mix_string(text: str) -> LengthMix:
    """'fixed:512', 'uniform:64-2048', 'bimodal:128-4096:0.25', 'sharegpt', 'lognormal:1024:0.8:8192'..."""
    head, _, rest = text.strip().partition(":")
    forms = {"fixed": "fixed:N", "uniform": "uniform:LO-HI", "bimodal": "bimodal:SHORT-LONG:P",
             "lognormal": "lognormal:MEAN:SIGMA:MAX", "sharegpt": "sharegpt[:MAX]", "alpaca": "alpaca[:MAX]"}
    try:
        if head == "fixed":
            return parse_mix({"dist": "fixed", "len": int(rest)})
        if head == "uniform":
            lo, hi = rest.split("-")
            return parse_mix({"dist": "uniform", "min": int(lo), "max": int(hi)})
        if head == "bimodal":
            pair, p_long = rest.split(":")
            short, long = pair.split("-")
            return parse_mix(
                {"dist": "bimodal", "short": int(short), "long": int(long), "p_long": float(p_long)}
            )
        if head == "lognormal":
            mean, sigma, mx = rest.split(":")
            return parse_mix(
                {"dist": "lognormal", "mean": float(mean), "sigma": float(sigma), "max": int(mx)}
            )
        if head in ("sharegpt", "alpaca"):
            return parse_mix({"dist": head, **({"max": int(rest)} if rest else {})})
    except ValueError as err:
        if isinstance(err, MixError):
            raise
        # the user's words, not Python's (no "invalid literal for int()", "not enough values")
        raise MixError(f"cannot read length mix {text!r}: expected {forms[head]} "
                       "(N, LO, HI, SHORT, LONG, MAX integers; MEAN, SIGMA, P numbers)") from None
    raise MixError(
        f"unknown length mix {text!r}; allowed: fixed:N, uniform:LO-HI, lognormal:MEAN:SIGMA:MAX, "
        "bimodal:SHORT-LONG:P, sharegpt[:MAX], alpaca[:MAX], or a mapping with dist"
    )


def draw_lengths(mix: LengthMix, batch: int, seed: int, phase: str) -> tuple[int, ...]:
    """The lengths of one case: a generator seeded from the seed, the mix and the batch."""
    key = f"{seed}|{mix.label}|{batch}|{phase}".encode()
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))
    return mix.sample(batch, rng, phase)
