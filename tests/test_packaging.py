"""The wheel ships every package of the tree, the kernels and the configs."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_in_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(meta["tool"]["setuptools"]["packages"])
    mapping = meta["tool"]["setuptools"]["package-dir"]
    tree_to_name = {v: k for k, v in mapping.items()}
    found = set()
    for init in list(ROOT.glob("attnbench/**/__init__.py")) + list(ROOT.glob("kernels/**/__init__.py")):
        rel = init.parent.relative_to(ROOT).parts
        top = tree_to_name[rel[0]]
        found.add(".".join((top, *rel[1:])))
    found.add("attnbench_configs")
    assert found <= listed, f"not shipped: {sorted(found - listed)}"
    assert all((ROOT / mapping[name.split(".")[0]] / Path(*name.split(".")[1:])).is_dir() for name in listed)


def test_configs_and_cuda_sources_are_package_data():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = meta["tool"]["setuptools"]["package-data"]
    assert "*.yaml" in data["attnbench_configs"]
    assert "cuda/*.cu" in data["attnbench_kernels"]
