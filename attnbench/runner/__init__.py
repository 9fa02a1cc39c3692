"""Running a sweep: config -> plan -> points in worker processes -> rows in a run directory.

- plan.py, estimate.py   which (case, backend) points run or are skipped, and how long they take
- contract.py            the sweep contract (one row per planned point, resumable, the ending recorded),
                         kept by SweepRecord for both runners
- sweep.py               the runner: one worker
- worker.py, child.py    where points run: a child process per device (fault isolation)
- case_runner.py         a case's points run in this process (in the child, or --no-isolate)
- cpus.py                the CPU share of a worker process
- shard.py               --shard K/N: any scheduler runs a slice of the plan
- multi_gpu.py, device_queue.py   --devices: one worker per GPU sharing one queue
- results.py             run directories: manifest.json + results.jsonl
- run_end.py, runlock.py how a run ended, and one writer per run directory
- merge.py, merge_plan.py  one run from shards or repeats
- layout_pairs.py        the `layout_pairs:` post-step: each paged kernel's two block orders timed
                         alternately into layout_pairs.json (layout_measure.py: one job in the
                         measuring process; layout_stats.py: quads and intervals)
- progress.py            the hooks the runner calls and the CLI draws
- command.py             the `attnbench sweep` command
"""
