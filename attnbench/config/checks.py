"""The checks every sweep-config value goes through, and the one error they raise.

Every error is a ConfigError whose message names the file, the key, the bad value and what is
allowed; the CLI prints it on one line and exits 2.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn


class ConfigError(ValueError):
    """A config that cannot be used; str() is the one-line message for the user."""


class Checker:
    """Checks of one config file's values; each failure is a ConfigError naming the file and key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, value: Any, allowed: str) -> NoReturn:
        raise ConfigError(f"{self.source}: {key}: bad value {value!r}; expected {allowed}")

    def no_unknown(self, d: dict[str, Any], allowed: set[str], prefix: str) -> None:
        for key in d:
            if key not in allowed:
                self.fail(
                    f"{prefix}{key}",
                    d[key],
                    f"no key {key!r} here; allowed keys: {', '.join(sorted(allowed))}",
                )

    def string(self, d: dict[str, Any], key: str, prefix: str) -> str:
        value = d.get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(prefix + key, value, "a non-empty string")
        return value

    def integer(self, d: dict[str, Any], key: str, prefix: str, default: int, minimum: int) -> int:
        value = d.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.fail(prefix + key, value, f"an integer >= {minimum}")
        return value

    def str_list(self, d: dict[str, Any], key: str, prefix: str, default: list[str]) -> list[str]:
        value = d.get(key, default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(prefix + key, value, "a list of strings")
        return value

    def axis(
        self,
        d: dict[str, Any],
        key: str,
        prefix: str,
        kind: type,
        default: Any,
        allowed: tuple[Any, ...] | None = None,
        minimum: int | None = None,
    ) -> tuple[Any, ...]:
        value = d.get(key, default)
        if value is None:
            self.fail(prefix + key, value, "a value or a list of values")
        values = value if isinstance(value, list) else [value]
        if not values and default != []:  # only axes whose default is empty may be empty
            self.fail(prefix + key, value, "a non-empty list")
        for v in values:
            ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
            if not ok:
                self.fail(prefix + key, v, f"{kind.__name__} values")
            if allowed is not None and v not in allowed:
                self.fail(prefix + key, v, f"one of {', '.join(map(str, allowed))}")
            if minimum is not None and v < minimum:
                self.fail(prefix + key, v, f"values >= {minimum}")
        return tuple(values)

    def optional_axis(self, d: dict[str, Any], key: str, prefix: str, kind: type) -> tuple[Any, ...]:
        """A pattern axis: values of `kind` (int >= 0 for window, float > 0 for softcap) or
        None / "none" for off; default [none]."""
        value = d.get(key, [None])
        values = value if isinstance(value, list) else [value]
        if not values:
            self.fail(prefix + key, value, "a non-empty list")
        out: list[Any] = []
        want = "a token count >= 0" if kind is int else "a number > 0"
        for v in values:
            if v is None or (isinstance(v, str) and v.strip().lower() == "none"):
                out.append(None)
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int):
                self.fail(prefix + key, v, f"{want} or none")
            if (kind is int and v < 0) or (kind is float and not (math.isfinite(v) and v > 0)):
                self.fail(prefix + key, v, f"{want} or none")
            out.append(float(v) if kind is float else v)
        return tuple(out)
