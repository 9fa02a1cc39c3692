"""Sweep configs: YAML in, validated frozen dataclasses out, before anything runs.

- sweep_config.py  the config (SweepConfig, TimingPolicy, parse_config/load_config): the entry point
- workload.py      one workload: the axes whose product gives its cases, and their validation
- expand.py        a workload's cases, and the `exclude:` rules
- layout_pairs.py  the `layout_pairs:` key (the paired block-order measurement after the points)
- checks.py        the checks every value goes through, and ConfigError (one line naming what was wrong)
- overrides.py     `--set key=value` overrides and `--workload` filters from the command line
- schema.py        the JSON Schema of configs (configs/schema.json), built from the validating code
- command.py       the `attnbench config` commands
"""
