"""The KV-cache memory study (`attnbench fragmentation`, a sweep's `fragmentation:` key).

Allocation policies (paged blocks of several sizes, per-request contiguous reservations) serve the
same request-length mixes through an iteration-level batching simulation; the study reports KV memory
used, reserved and wasted, and the batch each policy sustains, against the vLLM paper's figures.

- study.py          the study: policies x length mixes -> fragmentation.json
- study_config.py   its config (configs/fragmentation.yaml), read and checked
- command.py        `attnbench fragmentation`: run, write, summarise
- serving_sim.py    the serving simulation (iteration-level batching over a fixed KV capacity)
- allocation.py     its allocation policies, one strategy each: paged blocks, contiguous reservations
- contiguous.py     per-request reservations on a buddy allocator, as the paper models Orca
- length_dists.py   ShareGPT-like and Alpaca-like request lengths
- window.py         the sliding-window variant: blocks a windowed cache holds
- iteration_time.py the simulation's iteration time from this run's measured kernel times
- gpu_churn.py      the same churn on a real GPU through PyTorch's caching allocator
- paper.py          the paper's published figures
- render.py, window_render.py, colors.py   fragmentation.md and its figures
- in_sweep.py       the study as part of a sweep
"""
