"""Facts about this machine for the manifest and `attnbench doctor`: device, driver, versions."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch

import attnbench


def resolve_device(requested: str) -> str:
    """'auto' -> cuda when a GPU is visible, else cpu. Raises ValueError for cuda without a GPU."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device {requested!r} is not one of auto, cpu, cuda")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device cuda was asked for but no CUDA GPU is visible (torch.cuda.is_available() is False)"
        )
    return requested


def package_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - absent package
        return None


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def triton_version() -> str | None:
    """The installed triton's version, read from its metadata: importing triton only for this
    would cost a sweep's parent process about 0.3 s (H200 host)."""
    return package_version("triton") or package_version("pytorch-triton")


def flash_attn_version() -> str | None:
    for name in ("flash-attn-4", "flash-attn-3", "flash_attn_3", "flash_attn", "flash-attn"):
        v = package_version(name)
        if v:
            return f"{name} {v}"
    return None


def flashinfer_status() -> str:
    """FlashInfer's version and whether its JIT has nvcc and ninja (it compiles kernels on first use)."""
    from attnbench.backends._flashinfer_api import status_line

    return status_line()


def environment(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "attnbench_version": attnbench.__version__,
        "git_commit": git_commit(),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "device": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton_version(),
        "flash_attn": flash_attn_version(),
        "flashinfer": flashinfer_status(),
        "cpu_count": __import__("os").cpu_count(),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu_name=props.name,
            gpu_count=torch.cuda.device_count(),
            gpu_sm_count=props.multi_processor_count,
            gpu_memory_bytes=props.total_memory,
            gpu_capability=f"{props.major}.{props.minor}",
            gpu_l2_bytes=getattr(props, "L2_cache_size", None),
            gpu_uuid=str(getattr(props, "uuid", "")) or None,
        )
        try:
            from attnbench.telemetry import nvml_index, snapshot

            snap = snapshot(nvml_index(0))
            info["driver"] = snap.get("driver")
            info["clocks_at_start"] = snap
        except Exception as err:  # noqa: BLE001
            info["driver"] = None
            info["clocks_at_start"] = f"NVML unavailable: {err}"
    else:
        info.update(
            gpu_name=None, gpu_count=0, driver=None, gpu_uuid=None, cpu_model=platform.processor() or None
        )
    return info


def device_tag(env: dict[str, Any]) -> str:
    """Short name for run ids: 'h100', 'a100', 'cpu'."""
    name = (env.get("gpu_name") or "cpu").lower()
    for tag in ("h200", "h100", "a100", "l40s", "a10g", "l4"):
        if tag in name:
            return tag
    return name.replace("nvidia", "").strip().split()[0] if env.get("gpu_name") else "cpu"
