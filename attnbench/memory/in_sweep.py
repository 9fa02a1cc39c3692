"""The KV-cache memory study as part of a sweep: a sweep config's `fragmentation:` key names a study
config, and the sweep writes the study into its run directory (fragmentation.json, fragmentation.md),
where the report's fragmentation table and claims check read it. One command then answers the
memory claims beside the kernel ones.
"""

from __future__ import annotations

import time
from pathlib import Path

from attnbench.config.sweep_config import ConfigError, SweepConfig


def resolve_study(cfg: SweepConfig) -> Path | None:
    """The study config a sweep config names, checked before any point runs: as written, beside the
    sweep config, or among the shipped configs, in that order. None when it names none; ConfigError
    when it names one that is nowhere or cannot be used."""
    if not cfg.fragmentation:
        return None
    from attnbench.memory import study as frag
    from attnbench.paths import configs_dir

    named = Path(cfg.fragmentation)
    places = (named, Path(cfg.source).parent / named, configs_dir() / named)
    found = next((p for p in places if p.is_file()), None)
    if found is None:
        raise ConfigError(f"{cfg.source}: fragmentation: {cfg.fragmentation!r} not found; allowed: a study "
                          "config path (absolute, relative to this config, or a shipped one such as "
                          "fragmentation-demo.yaml)")
    try:
        frag.load_config(found)
    except frag.ConfigError as err:
        raise ConfigError(f"{cfg.source}: fragmentation: {err}") from None
    return found


def write_into_run(study: Path, run_dir: Path) -> Path:
    """Run the study and write fragmentation.json and fragmentation.md into run_dir; the JSON's path."""
    from attnbench.memory import render
    from attnbench.memory import study as frag

    # the run's own GPU decode rows time the serving iterations (else the roofline, said in the JSON)
    result = frag.run_study(frag.load_config(study), timing_run=run_dir)
    path = frag.write_json(result, run_dir)
    (run_dir / "fragmentation.md").write_text(render.render_markdown(result, []))
    return path


def write_study(study: Path, run_dir: Path) -> None:
    """write_into_run for the sweep command: a line on success; one line and exit 2 for a study that
    cannot run (its requests never fill the KV memory)."""
    from attnbench.console import fail
    from attnbench.console import out as console
    from attnbench.memory import study as frag

    started = time.perf_counter()
    try:
        path = write_into_run(study, run_dir)
    except frag.ConfigError as err:
        fail(str(err))
    console.print(f"fragmentation study ({study.name}): {path} in {time.perf_counter() - started:.1f} s")
