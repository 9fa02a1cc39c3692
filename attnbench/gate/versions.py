"""Two versions of the backends side by side in one process, for the gate's A/B mode.

A version is named by a spec:
  worktree (or .)      the backends of this checkout,
  git:REV              the backends and kernels of git revision REV of this repository
                       (`git archive REV attnbench kernels`, unpacked into a temporary folder),
  path:DIR             those of another checkout at DIR (a folder holding attnbench/ and kernels/),
  plugin:MOD[,MOD2]    this checkout's backends plus the plugin modules MOD (as ATTNBENCH_PLUGINS
                       would load them); a plugin backend of a built-in's name replaces it there.
Each version is imported afresh under the names attnbench.*, attnbench_kernels.* and kernels.* (and
its plugins), its
modules kept aside, and the running process's own modules put back: the harness (cases, inputs,
reference) stays the caller's, each version's backends keep the globals of their own modules.
While a version's code runs (prepare, each call), `active()` puts its modules in sys.modules, so
an import made inside a backend's function finds its own version.
The CUDA kernels are built into a library keyed by their sources and loaded with ctypes, so each
version builds and loads its own. Limit: an extension that registers a process-global name (a
torch.library op) exists once per process, so two versions of one cannot both be loaded.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

# attnbench.backends.QUIET_ENV: set, the package leaves its plugin problems to the caller (imported
# by name here because the package is re-imported per version below).
QUIET_ENV = "ATTNBENCH_QUIET_PLUGIN_ERRORS"

# module names a version owns: the package, the kernels (imported as attnbench_kernels by
# attnbench.paths.import_kernels, or as kernels), so each version runs its own kernel sources
_OWN_MODULES = ("attnbench", "attnbench_kernels", "kernels")
_ARCHIVED = ("attnbench", "kernels")


class VersionError(Exception):
    """A version spec that cannot be loaded: one line naming what and why (exit 2)."""


def checkout_root() -> Path:
    """The folder this process's attnbench package was imported from."""
    import attnbench

    return Path(attnbench.__file__).resolve().parent.parent


def _owned(name: str, extra: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in (*_OWN_MODULES, *extra))


@dataclass
class Version:
    spec: str
    root: Path
    plugins: tuple[str, ...]
    modules: dict[str, ModuleType]
    backends: dict[str, Any]  # name -> backend instance of this version
    describe: str = ""
    _tmp: Any = field(default=None, repr=False)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """This version's modules in sys.modules for the duration (the caller's put back after)."""
        names = tuple(self.plugins)
        saved = {n: m for n, m in sys.modules.items() if _owned(n, names)}
        for n in saved:
            del sys.modules[n]
        sys.modules.update(self.modules)
        try:
            yield
        finally:
            # modules the version imported meanwhile (a kernel imported lazily in prepare) stay its own
            self.modules = {n: m for n, m in sys.modules.items() if _owned(n, names)}
            for n in self.modules:
                del sys.modules[n]
            sys.modules.update(saved)


def _git_export(rev: str, repo: Path) -> tuple[tempfile.TemporaryDirectory, str]:
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", f"{rev}^{{commit}}"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        tar = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", sha, *_ARCHIVED],
            capture_output=True, check=True, timeout=120,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", b"") or b""
        detail = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        raise VersionError(f"git:{rev}: not a revision of {repo} ({' '.join(detail.split()) or e})") from None
    tmp = tempfile.TemporaryDirectory(prefix=f"attnbench-ab-{sha[:10]}-")
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(tmp.name, filter="data")
    return tmp, sha


def load_version(spec: str) -> Version:
    """Import the backends a spec names (see the module docstring)."""
    here = checkout_root()
    tmp: tempfile.TemporaryDirectory[str] | None = None
    plugins: tuple[str, ...] = ()
    describe = ""
    if spec in ("worktree", "."):
        root, describe = here, f"this checkout ({here})"
    elif spec.startswith("git:") and spec[4:]:
        tmp, sha = _git_export(spec[4:], here)
        root, describe = Path(tmp.name), f"git revision {spec[4:]} ({sha[:12]})"
    elif spec.startswith("path:") and spec[5:]:
        root = Path(spec[5:]).resolve()
        if not (root / "attnbench" / "backends").is_dir():
            raise VersionError(f"{spec}: {root} holds no attnbench/backends (a checkout of this repository)")
        describe = f"the checkout at {root}"
    elif spec.startswith("plugin:") and spec[7:]:
        root = here
        plugins = tuple(m.strip() for m in spec[7:].split(",") if m.strip())
        describe = f"this checkout with plugin(s) {', '.join(plugins)}"
    else:
        raise VersionError(
            f"version {spec!r} is not allowed: use worktree, git:REV, path:DIR or plugin:MODULE[,MODULE]"
        )
    saved = {n: m for n, m in sys.modules.items() if _owned(n, plugins)}
    old_path, old_env = list(sys.path), os.environ.get("ATTNBENCH_PLUGINS")
    for n in saved:
        del sys.modules[n]
    sys.path.insert(0, str(root))
    os.environ["ATTNBENCH_PLUGINS"] = ",".join(plugins)
    importlib.invalidate_caches()
    old_quiet = os.environ.get(QUIET_ENV)
    os.environ[QUIET_ENV] = "1"  # the problems are raised below, not printed as warnings
    try:
        # The normal loading order, as a sweep has it: the built-in backends first, then the plugins
        # (a plugin may wrap a built-in backend, so it must find it registered).
        package = importlib.import_module("attnbench.backends")
        backends = package.all_backends()
        # A sweep warns about a plugin it cannot import and goes on; a version that names one
        # would silently compare the checkout with itself, so here it is a usage error.
        problems = package.plugin_problems()
        if problems:
            raise VersionError(f"{spec}: its backends cannot be imported ({problems[0]})")
        modules = {n: m for n, m in sys.modules.items() if _owned(n, plugins)}
    except VersionError:
        raise
    except Exception as e:  # noqa: BLE001 - a version that cannot import is a usage error here
        raise VersionError(f"{spec}: its backends cannot be imported ({type(e).__name__}: {e})") from None
    finally:
        for n in [n for n in sys.modules if _owned(n, plugins)]:
            del sys.modules[n]
        sys.modules.update(saved)
        sys.path[:] = old_path
        if old_quiet is None:
            os.environ.pop(QUIET_ENV, None)
        else:
            os.environ[QUIET_ENV] = old_quiet
        if old_env is None:
            os.environ.pop("ATTNBENCH_PLUGINS", None)
        else:
            os.environ["ATTNBENCH_PLUGINS"] = old_env
    return Version(spec, root, plugins, modules, backends, describe, tmp)
