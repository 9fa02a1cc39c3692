"""A plugin that wraps a built-in backend it never imports itself (as scripts/gate_plant_plugin.py
does): it relies on the built-ins being registered before plugins load."""

from __future__ import annotations

from attnbench.backends.base import registry

registry()["sdpa-math"] = type("WrappedSdpaMath", (registry()["sdpa-math"],), {})
