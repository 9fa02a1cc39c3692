"""Where the kernel sources and the shipped configs live, from a source tree or an installed wheel."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

_TREE_ROOT = Path(__file__).resolve().parent.parent


def _package_dir(installed_name: str, tree_folder: str) -> Path:
    tree = _TREE_ROOT / tree_folder
    if (tree / "__init__.py").exists():
        return tree
    module = importlib.import_module(installed_name)
    assert module.__file__ is not None, f"{installed_name} is a namespace package, not the shipped one"
    return Path(module.__file__).resolve().parent


def kernels_dir() -> Path:
    """The folder holding kernels/triton and kernels/cuda."""
    return _package_dir("attnbench_kernels", "kernels")


def configs_dir() -> Path:
    """The folder holding the shipped sweep configs (smoke.yaml, h100.yaml, ...)."""
    return _package_dir("attnbench_configs", "configs")


def import_kernels():
    """Import the kernels package as `attnbench_kernels`, from the tree when running from one.

    Kernels never import attnbench; this is the one seam through which backends reach them.
    """
    if "attnbench_kernels" in sys.modules:
        return sys.modules["attnbench_kernels"]
    root = kernels_dir()
    spec = importlib.util.spec_from_file_location(
        "attnbench_kernels", root / "__init__.py", submodule_search_locations=[str(root)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["attnbench_kernels"] = module
    spec.loader.exec_module(module)
    return module


def shipped_configs() -> list[str]:
    """Names of the shipped sweep configs (h100, smoke, ...), from the tree or the wheel; study
    configs (fragmentation.yaml) have no workloads and are not sweeps."""
    return sorted(p.stem for p in configs_dir().glob("*.yaml") if "\nworkloads:" in "\n" + p.read_text())


def find_config(name_or_path: str | Path) -> Path:
    """A config path as given when it exists, else a shipped config by name (`h100` or `h100.yaml`),
    so `attnbench sweep h100` works from a wheel as from the source tree. An unknown name comes back
    unchanged: the loader's error names it."""
    path = Path(name_or_path)
    if path.exists() or len(path.parts) > 1:
        return path
    shipped = configs_dir() / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    return shipped if shipped.exists() else path
