"""The regression gate: is the current code slower than a baseline?

Two modes, one verdict vocabulary (SLOW, FAST, SAME, NOISY, BROKEN, VANISHED, UNKNOWN, new):

- runs.py       a current run (or `sweep --repeat M` runs) against a baseline, point by point
- sides.py      reading the two sides (a baseline's K runs, the current run) and whether they compare
- judge.py      one point's verdict: statuses first, then the spread rule or the single-run rule
- stats.py      the interval of a current/baseline time ratio
- ab.py         A/B: two versions alternating sample by sample in one process (ab_timing.py: the pairs)
- versions.py   loading two versions of the backends side by side
- baselines.py  named baselines committed under results/baselines/NAME/
- baseline_command.py   the `attnbench baseline` commands
- repeat.py     `sweep --repeat K`: K fresh sweep processes
- output.py     the terminal table, the CI page's Markdown summary, JUnit XML; run_gate: compare, show
- command.py    the `attnbench gate` commands
"""
