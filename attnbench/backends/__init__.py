"""Backends: one module per implementation, each registered by the @register decorator.

Importing a backend module must never fail because an optional dependency is missing: import
guards live inside each module's available().
"""

from __future__ import annotations

import importlib
import os
import pkgutil

from attnbench.backends.base import Backend, Prepared, Unsupported, register, registry

__all__ = ["Backend", "Prepared", "Unsupported", "register", "all_backends", "get_backend", "backend_names"]

_loaded = False


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("_") or mod.name == "base":
            continue
        importlib.import_module(f"{__name__}.{mod.name}")
    # Out-of-tree backends: ATTNBENCH_PLUGINS=pkg.module,other.module (each registers with @register).
    for name in filter(None, (m.strip() for m in os.environ.get("ATTNBENCH_PLUGINS", "").split(","))):
        importlib.import_module(name)
    # Installed packages: the `attnbench.backends` entry-point group (docs/plugins.md).
    from attnbench.backends._plugins import load_entry_points

    load_entry_points()
    _loaded = True


def all_backends() -> dict[str, Backend]:
    """Every registered backend, instantiated, by name (sorted by family, then name)."""
    _load_all()
    order = {"naive": 0, "flash": 1, "paged": 2}
    items = sorted(registry().items(), key=lambda kv: (order[kv[1].family], kv[0]))
    return {name: cls() for name, cls in items}


def backend_names() -> list[str]:
    return list(all_backends())


def get_backend(name: str) -> Backend:
    backends = all_backends()
    if name not in backends:
        raise KeyError(f"unknown backend {name!r}; known: {', '.join(backends)}")
    return backends[name]
