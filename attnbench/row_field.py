"""What a column of the results row is (attnbench.row): a Field with its JSON type, unit, how much it
varies, where it is present, who writes it and what it means, and the check of a value against it.

The vocabularies of `varies` and `presence` are explained in attnbench.row's docstring. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VARIES = ("config", "host", "run")
PRESENCE = ("every", "ok", "some")
JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object")


@dataclass(frozen=True)
class Field:
    """One column. type: its JSON type (number includes integers); items: the element type of an
    array; nullable: null allowed; unit: "" for labels and counts without one; group: the part of
    the harness that writes it."""

    name: str
    type: str
    unit: str
    varies: str
    presence: str
    group: str
    meaning: str
    nullable: bool = False
    items: str | None = None
    enum: tuple[str, ...] | None = None
    retired: bool = False  # found in older runs only; no longer written

    def __post_init__(self) -> None:
        if self.type not in JSON_TYPES or self.varies not in VARIES or self.presence not in PRESENCE:
            raise ValueError(f"column {self.name}: type {self.type!r}, varies {self.varies!r}, presence "
                             f"{self.presence!r}: allowed {JSON_TYPES}, {VARIES}, {PRESENCE}")
        if (self.items is not None) != (self.type == "array"):
            raise ValueError(f"column {self.name}: an array names its items' type, nothing else does")

    @property
    def numeric(self) -> bool:
        """A number column (not a bool, not a list): what a reader converts with to_numeric."""
        return self.type in ("integer", "number")

    def accepts(self, value: Any) -> bool:
        """Whether value has this column's declared JSON type."""
        if value is None:
            return self.nullable
        if not _is(value, self.type):
            return False
        if self.enum is not None and value not in self.enum:
            return False
        if self.type == "array" and self.items is not None:
            return all(_is(v, self.items) for v in value)
        return True

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any] = {"type": [self.type, "null"] if self.nullable else self.type}
        if self.items is not None:
            s["items"] = {"type": self.items}
        if self.enum is not None:
            s["enum"] = [*self.enum, None] if self.nullable else list(self.enum)
        s["description"] = self.meaning
        if self.retired:
            s["deprecated"] = True
        # annotations (JSON Schema ignores x- keywords): what a reader of the table wants besides types
        if self.unit:
            s["x-unit"] = self.unit
        s.update({"x-varies": self.varies, "x-presence": self.presence, "x-written-by": self.group})
        return s


def _is(value: Any, json_type: str) -> bool:
    if isinstance(value, bool):
        return json_type == "boolean"
    return {
        "string": isinstance(value, str),
        "integer": isinstance(value, int),
        "number": isinstance(value, (int, float)),
        "boolean": False,
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }[json_type]

