"""Backends: one module per implementation, each registered by the @register decorator.

Importing a backend module must never fail because an optional dependency is missing: import
guards live inside each module's available().
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

from attnbench.backends.base import Backend, Prepared, Unsupported, register, registry

__all__ = ["Backend", "Prepared", "Unsupported", "register", "all_backends", "get_backend", "backend_names",
           "plugin_problems"]

_loaded = False
QUIET_ENV = "ATTNBENCH_QUIET_PLUGIN_ERRORS"
_plugin_problems: list[str] = []  # one line per ATTNBENCH_PLUGINS module that failed to import
_plugin_classes: dict[str, set[str]] = {}  # plugin module -> the backend names its import registered


def _listed_plugins() -> list[str]:
    return [m.strip() for m in os.environ.get("ATTNBENCH_PLUGINS", "").split(",") if m.strip()]


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("_") or mod.name == "base":
            continue
        importlib.import_module(f"{__name__}.{mod.name}")
    # Out-of-tree backends: ATTNBENCH_PLUGINS=pkg.module,other.module (each registers with @register).
    # A module that is missing or fails at import is one line in plugin_problems() (the commands
    # print it) and its backends are absent; the built-in backends and every command still work.
    _plugin_problems.clear()
    for name in _listed_plugins():
        try:
            before = set(registry())
            importlib.import_module(name)
            # what this plugin registered (once: a module imported before registers nothing new)
            _plugin_classes.setdefault(name, set(registry()) - before)
        except BaseException as err:  # noqa: BLE001 - SyntaxError, SystemExit, ... from user code
            if isinstance(err, KeyboardInterrupt):
                raise
            detail = " ".join(str(err).split())[:200]
            _plugin_problems.append(f"ATTNBENCH_PLUGINS: cannot import {name!r} ({type(err).__name__}: "
                                    f"{detail}); its backends are left out")
    # Installed packages: the `attnbench.backends` entry-point group (docs/plugins.md).
    from attnbench.backends._plugins import PluginError, load_entry_points

    try:
        load_entry_points()
    except PluginError as err:  # one line, like a bad ATTNBENCH_PLUGINS module
        _plugin_problems.append(f"{err}; its backends are left out")
    _loaded = True
    if os.environ.get(QUIET_ENV) != "1":  # worker children: the parent has said it already
        for line in _plugin_problems:
            sys.stderr.write(f"warning: {line}\n")


def plugin_problems() -> list[str]:
    """One line per ATTNBENCH_PLUGINS module that could not be imported (after loading)."""
    _load_all()
    return list(_plugin_problems)


def all_backends() -> dict[str, Backend]:
    """Every registered backend, instantiated, by name (sorted by family, then name)."""
    _load_all()
    order = {"naive": 0, "flash": 1, "paged": 2}
    # a plugin's backends count only while it is listed (a process that imported it once, e.g. a
    # test, and then changed ATTNBENCH_PLUGINS would otherwise plan backends its workers lack)
    listed = set(_listed_plugins())
    dropped = {b for name, names in _plugin_classes.items() if name not in listed for b in names}
    items = sorted(((n, c) for n, c in registry().items() if n not in dropped),
                   key=lambda kv: (order[kv[1].family], kv[0]))
    made: dict[str, Backend] = {}
    for name, cls in items:
        try:
            made[name] = cls()
        except Exception as err:  # noqa: BLE001 - a plugin class that cannot be made: left out
            problem = f"backend {name!r} ({cls.__module__}) cannot be created: {type(err).__name__}: {err}"
            if problem not in _plugin_problems:
                _plugin_problems.append(problem)
                if os.environ.get(QUIET_ENV) != "1":
                    sys.stderr.write(f"warning: {problem}\n")
    return made



def backend_names() -> list[str]:
    return list(all_backends())


def get_backend(name: str) -> Backend:
    backends = all_backends()
    if name not in backends:
        broken = f" ({'; '.join(_plugin_problems)})" if _plugin_problems else ""
        raise KeyError(f"unknown backend {name!r}; known: {', '.join(backends)}{broken}")
    return backends[name]
