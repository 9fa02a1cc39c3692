"""Out-of-tree backends from installed packages: the `attnbench.backends` entry-point group.

A package declares, in its pyproject.toml,

    [project.entry-points."attnbench.backends"]
    my-kernel = "my_pkg.attnbench_backend"          # a module whose classes use @register
    # or  my-kernel = "my_pkg.backend:MyKernel"     # a Backend subclass, registered here

and `pip install` makes attnbench see it in every command and worker process, beside the modules
named by ATTNBENCH_PLUGINS. See docs/plugins.md.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

GROUP = "attnbench.backends"


class PluginError(ImportError):
    """An installed plugin that cannot be loaded; str() names the entry point and the cause."""


def installed() -> list[EntryPoint]:
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def load_entry_points() -> list[str]:
    """Load every installed entry point of the group; returns their names."""
    from attnbench.backends.base import Backend, register, registry

    names = []
    for ep in installed():
        try:
            obj = ep.load()
        except Exception as err:  # noqa: BLE001 - reported with the entry point that failed
            raise PluginError(
                f"backend plugin {ep.name!r} ({ep.value}, entry point group {GROUP}) failed to import: "
                f"{type(err).__name__}: {err}"
            ) from err
        if isinstance(obj, type) and issubclass(obj, Backend) and registry().get(obj.name) is not obj:
            register(obj)
        names.append(ep.name)
    return names
