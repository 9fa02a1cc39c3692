"""The results row's columns (attnbench.row), one Field each, grouped by the part of the harness that
writes them, in the order a table shows them. Adding a column means adding an entry here (and, for a
shipped writer, regenerating configs/row-schema.json: `attnbench config row-schema`).

One table, a column to an entry: split by group, a reader would lose the one place to look. Torch-free.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from attnbench.case import DTYPES, KV_DTYPES, KV_LAYOUTS, KV_SCALES, PHASES
from attnbench.row_field import Field

STATUSES = ("ok", "skipped", "failed", "incorrect")


def _f(name: str, type_: str, unit: str, varies: str, presence: str, meaning: str, **kw: Any) -> Field:
    return Field(name, type_, unit, varies, presence, "", meaning, **kw)


def _in(group: str, *columns: Field) -> tuple[Field, ...]:
    return tuple(replace(c, group=group) for c in columns)


# ---- the columns, in the order a table shows them ----------------------------------------------

IDENTITY = _in(
    "the run (attnbench.runner.results.RunDir.append_row, from the manifest)",
    _f("run_id", "string", "", "run", "every", "the run directory's id: rows of several runs stay apart"),
    _f("gpu_name", "string", "", "host", "every", "the GPU's name; null on a CPU", nullable=True),
    _f("git_commit", "string", "", "run", "every", "the commit the run's code came from; null outside git",
       nullable=True),
)
IDENTITY_FIELDS = tuple(f.name for f in IDENTITY)
POINT_KEY = ("case_id", "backend")  # a point's identity: resume, merge and the gate match rows on it

CASE = _in(
    "the case (attnbench.case.Case.describe)",
    _f("workload", "string", "", "config", "every", "the config's workload the case came from"),
    _f("phase", "string", "", "config", "every", "prefill, decode or mixed (chunked prefill)",
       enum=PHASES),
    _f("num_q_heads", "integer", "heads", "config", "every", "query heads"),
    _f("num_kv_heads", "integer", "heads", "config", "every", "key/value heads"),
    _f("head_dim", "integer", "elements", "config", "every", "head dimension"),
    _f("dtype", "string", "", "config", "every", "element type", enum=DTYPES),
    _f("causal", "boolean", "", "config", "every", "causal mask, aligned bottom-right"),
    _f("seqlen_mix", "string", "", "config", "every", "the length mix the lengths were drawn from"),
    _f("block_size", "integer", "tokens", "config", "every", "tokens per KV-cache block; null: contiguous KV",
       nullable=True),
    _f("kv_layout", "string", "", "config", "every", "order of a sequence's blocks in the pool",
       enum=KV_LAYOUTS),
    _f("seed", "integer", "", "config", "every", "seed of the inputs and of the lengths"),
    _f("prefix_len", "integer", "tokens", "config", "every", "leading context tokens all sequences share"),
    _f("window", "integer", "tokens", "config", "every", "sliding-window left context; null: full attention",
       nullable=True),
    _f("softcap", "number", "", "config", "every", "logit soft-cap c (scores become c*tanh(s/c)); null: off",
       nullable=True),
    _f("alibi", "boolean", "", "config", "every", "ALiBi biases added to the scores"),
    _f("kv_dtype", "string", "", "config", "some",
       "KV-cache storage when quantised (fp8_e4m3: one byte per element plus float32 scales); absent: "
       "K/V in dtype (kv_dtype auto, every row before the axis)", enum=KV_DTYPES),
    _f("kv_scale", "string", "", "config", "some",
       "a quantised KV cache's scales: one per tensor (K and V each) or one per KV head; absent with "
       "kv_dtype",
       enum=KV_SCALES),
    _f("case_id", "string", "", "config", "every",
       "the case's stable key (with backend: the point's identity)"),
    _f("batch", "integer", "sequences", "config", "every", "sequences in the batch"),
    _f("q_lens", "array", "tokens", "config", "every", "query length per sequence", items="integer"),
    _f("kv_lens", "array", "tokens", "config", "every", "key/value length per sequence", items="integer"),
    _f("total_q", "integer", "tokens", "config", "every", "sum of q_lens"),
    _f("total_kv", "integer", "tokens", "config", "every", "sum of kv_lens"),
    _f("max_q", "integer", "tokens", "config", "every", "longest query"),
    _f("max_kv", "integer", "tokens", "config", "every", "longest context"),
    _f("mean_kv", "number", "tokens", "config", "every", "total_kv / batch"),
    _f("gqa_ratio", "integer", "", "config", "every", "query heads per KV head"),
    _f("pattern", "string", "", "config", "every",
       "score pattern beyond the causal mask: none, window48+softcap20..."),
    _f("tags", "array", "", "config", "every",
       "the workload's labels (the report's classes)", items="string"),
)

POINT = _in(
    "the point (attnbench.point.base_row) and the FLOP and byte models (attnbench.metrics)",
    _f("backend", "string", "", "config", "every", "the backend's registered name"),
    _f("family", "string", "", "config", "every", "naive, flash or paged"),
    _f("impl", "string", "", "config", "every", "torch, triton, cuda, cpp or external"),
    _f("device", "string", "", "config", "every", "cpu or cuda", enum=("cpu", "cuda")),
    _f("flops", "integer", "FLOP", "config", "every",
       "forward FLOPs: 4 * head_dim per attended pair per query head"),
    _f("min_hbm_bytes", "integer", "bytes", "config", "every",
       "fewest bytes any implementation moves: Q, K, V read once, O written once (+ block tables; "
       "a quantised KV at its own element size plus its scales)"),
    _f("padding_waste", "number", "fraction", "config", "every",
       "share of a padded (batch, max_kv) layout that is padding"),
    _f("status", "string", "", "config", "every", "what became of the point", enum=STATUSES),
    _f("reason", "string", "", "config", "every", "why a point is not ok, in words; empty when ok"),
    _f("prepare_s", "number", "s", "run", "ok",
       "prepare's wall time: set-up, compiles, first calls it makes"),
    _f("first_call_s", "number", "s", "run", "ok",
       "prepare's start to the end of the first synchronised call"),
)

MEMORY = _in(
    "the first call's memory (attnbench.measure.measure_memory)",
    _f("peak_mem_bytes", "integer", "bytes", "host", "ok",
       "allocator peak during the call above the level before it",
       nullable=True),
    _f("working_mem_bytes", "integer", "bytes", "host", "ok", "that peak minus the output's bytes: scratch",
       nullable=True),
)

CHECK = _in(
    "the correctness check (attnbench.reference.ErrorCheck.row_fields)",
    _f("rel_err", "number", "", "host", "ok",
       "relative error of the worst (sequence, head) cell against the reference",
       nullable=True),
    _f("rel_err_tol", "number", "", "host", "ok", "that cell's allowed relative error", nullable=True),
    _f("rel_err_ratio", "number", "", "host", "ok",
       "rel_err / rel_err_tol; above 1 is incorrect", nullable=True),
    _f("rel_err_seq", "integer", "", "host", "ok", "the worst cell's sequence", nullable=True),
    _f("rel_err_head", "integer", "", "host", "ok", "the worst cell's query head", nullable=True),
    _f("rel_err_batch", "number", "", "host", "ok", "batch-wide Frobenius relative error", nullable=True),
    _f("rel_err_plain", "number", "", "host", "ok",
       "the plain in-dtype implementation's error in the worst cell",
       nullable=True),
)

POOL = _in(
    "the paged pool (attnbench.paged_pool)",
    _f("kv_blocks_allocated", "integer", "blocks", "config", "some", "blocks the case's sequences hold"),
    _f("kv_bytes_allocated", "integer", "bytes", "config", "some",
       "K and V bytes of those blocks (at the KV element size)"),
    _f("kv_bytes_used", "integer", "bytes", "config", "some", "K and V bytes of the distinct tokens stored"),
    _f("kv_bytes_logical", "integer", "bytes", "config", "some",
       "K and V bytes of total_kv tokens, none shared"),
    _f("kv_bytes_saved_by_prefix", "integer", "bytes", "config", "some", "bytes prefix sharing saved"),
    _f("prefix_cache_queries", "integer", "", "config", "some", "prefix-cache look-ups building the pool"),
    _f("prefix_cache_hits", "integer", "", "config", "some", "of which found a cached block"),
    _f("prefix_cache_hit_rate", "number", "fraction", "config", "some", "hits / queries"),
    _f("kv_pool_layout", "string", "", "config", "some", "the pool's block order (the case's kv_layout)"),
)

BACKEND_INFO = _in(
    "the backend (Prepared.info of attnbench.backends.*)",
    _f("input_mode", "string", "", "config", "some",
       "how the backend was handed the batch (padded, packed-varlen...)"),
    _f("variant", "string", "", "host", "some", "the kernel variant or configuration the backend chose"),
    _f("tuned_by", "string", "", "host", "some",
       "triton: where the launch config came from: timed (candidates timed in this run), memo (this "
       "machine's tuning file, ATTNBENCH_TRITON_TUNING_CACHE), given (passed in), first fit (no GPU)"),
    _f("kv_layout_used", "string", "", "config", "some", "the KV layout the kernel read"),
    _f("compile_s", "number", "s", "run", "some", "seconds prepare spent compiling"),
    _f("new_kernel", "boolean", "", "host", "some",
       "whether prepare compiled a new kernel variant in this process"),
    _f("pattern_args", "string", "", "config", "some",
       "which pattern arguments are runtime, which compile-time"),
    _f("interpreted", "boolean", "", "config", "some", "a Triton kernel run by the interpreter (CPU)"),
    _f("query_tile", "integer", "rows", "config", "some", "cpu-paged: query rows per tile"),
    _f("threads", "integer", "threads", "host", "some", "cpu-paged: OpenMP threads used"),
    _f("heads_per_block", "integer", "heads", "config", "some", "cuda-paged: query heads per thread block"),
    _f("paged_impl", "string", "", "config", "some",
       "cuda-paged: tc (tensor-core QK^T and PV) or simt (FP32 CUDA cores), ATTNBENCH_CUDA_PAGED_IMPL"),
    _f("partition_tokens", "integer", "tokens", "host", "some", "cuda-paged v2: tokens per partition"),
    _f("partitions", "integer", "", "host", "some", "cuda-paged v2: partitions of the longest context"),
    _f("num_splits", "integer", "", "host", "some", "triton-paged: splits of the context"),
    _f("config", "string", "", "host", "some", "cuda-flash: the tile configuration"),
    _f("gqa", "string", "", "config", "some", "sdpa: how grouped KV heads were fed"),
    _f("flash_attn_impl", "string", "", "host", "some", "flash-attn: the module called"),
    _f("flash_attn_version", "string", "", "host", "some", "flash-attn: its version"),
    _f("kv_path", "string", "", "config", "some", "flash-attn: paged or varlen"),
    _f("fa_entry", "string", "", "host", "some", "flash-attn: the entry point called"),
    _f("fi_version", "string", "", "host", "some", "FlashInfer: its version"),
    _f("fi_path", "string", "", "host", "some", "FlashInfer: the wrapper path planned"),
    _f("fi_backend", "string", "", "host", "some", "FlashInfer: the kernel backend planned"),
    _f("fi_plan_s", "number", "s", "run", "some", "FlashInfer: plan() seconds"),
    _f("fi_jit_built", "array", "", "run", "some",
       "FlashInfer: JIT modules built by this prepare", items="string"),
    _f("fi_jit_dir", "string", "", "host", "some", "FlashInfer: its JIT cache folder"),
    _f("fi_pages", "integer", "pages", "config", "some", "FlashInfer: pages in the paged KV"),
    _f("flex_q_block", "integer", "rows", "host", "some", "FlexAttention: query block size"),
    _f("flex_block_n", "integer", "tokens", "host", "some", "flex-paged: KV tile", nullable=True),
    _f("flex_full_blocks", "boolean", "", "host", "some", "flex-paged: full blocks skip the mask"),
)

TIMING = _in(
    "the timing (attnbench.measure.Timing.summary)",
    _f("latency_ms_p50", "number", "ms", "run", "ok", "median sample: the point's latency"),
    _f("latency_ms_p10", "number", "ms", "run", "ok", "10th percentile sample"),
    _f("latency_ms_p90", "number", "ms", "run", "ok", "90th percentile sample"),
    _f("latency_ms_mean", "number", "ms", "run", "ok", "mean sample"),
    _f("latency_ms_min", "number", "ms", "run", "ok", "fastest sample"),
    _f("latency_ms_ci_low", "number", "ms", "run", "ok", "lower end of the median's ~95% interval"),
    _f("latency_ms_ci_high", "number", "ms", "run", "ok", "upper end of the median's ~95% interval"),
    _f("n_samples", "integer", "", "run", "ok", "timed samples"),
    _f("samples_ms", "array", "ms", "run", "ok",
       "the samples in order taken: every one, or an even stride of them (at most measure.KEPT_SAMPLES)",
       items="number"),
    _f("stop_reason", "string", "", "run", "ok", "why sampling stopped: ci-target, max-samples, time-cap..."),
    _f("warmup_calls", "integer", "", "run", "ok", "untimed calls before the samples"),
    _f("timer", "string", "", "config", "ok", "the clock: host-perf-counter, cuda-events, cupti..."),
    _f("cuda_graph", "boolean", "", "config", "some", "GPU: samples replay a CUDA graph"),
    _f("call_ms_p50", "number", "ms", "run", "some", "GPU: median host time inside one eager call"),
    _f("call_ms_p90", "number", "ms", "run", "some", "GPU: 90th percentile of that"),
    _f("input_copies", "integer", "", "config", "some", "GPU: input copies the samples rotate over"),
    _f("l2_flush", "boolean", "", "config", "some", "GPU: L2 flushed before each sample"),
    _f("l2_flush_kind", "string", "", "config", "some",
       "GPU: how (attnbench.stream_hold.FLUSH_KIND, write-read); absent in rows of the read-only flush"),
    _f("timing_fallback", "string", "", "run", "some", "GPU: why the stream could not be held"),
    _f("timing_method", "string", "", "config", "ok",
       "how samples were timed: host-perf-counter, cuda-events-held..."),
    _f("exposed_samples", "integer", "", "run", "some", "GPU: samples dropped because the hold ended early"),
    _f("hold_us", "number", "us", "run", "some", "GPU: the spin hold's length", nullable=True),
    _f("short_point", "boolean", "", "run", "some",
       "GPU: median below timing.short_point_ms, so sampled for at least timing.short_min_time_s"),
    _f("sample_span_s", "number", "s", "run", "some", "GPU: wall time from the first sample to the last"),
    _f("launch_bound", "boolean", "", "run", "ok",
       "the host call is slower than the device time; null on a CPU",
       nullable=True),
)

THERMAL = _in(
    "the thermal protocol (attnbench.thermal)",
    _f("thermal_settled", "boolean", "", "run", "some",
       "GPU, compute-bound: the SM clock settled before sampling"),
    _f("thermal_warmup_s", "number", "s", "run", "some", "seconds run until it settled"),
    _f("thermal_warmup_rounds", "integer", "", "run", "some", "rounds run until it settled"),
    _f("sm_clock_mhz_settled", "number", "MHz", "run", "some", "the settled SM clock", nullable=True),
    _f("energy_j_per_call", "number", "J", "run", "some",
       "energy per call from NVML's counter", nullable=True),
)

ACHIEVED = _in(
    "the roofline figures (attnbench.point.run_point, attnbench.metrics.achieved)",
    _f("tflops", "number", "TFLOP/s", "run", "ok", "flops / latency_ms_p50"),
    _f("hbm_gbps", "number", "GB/s", "run", "ok", "min_hbm_bytes / latency_ms_p50 (1e9 B/s)"),
    _f("bw_util", "number", "fraction", "run", "ok",
       "hbm_gbps / the calibrated copy bandwidth", nullable=True),
    _f("flop_util", "number", "fraction", "run", "ok", "tflops / the calibrated matmul rate", nullable=True),
    _f("compute_bound", "boolean", "", "run", "ok", "arithmetic intensity above the calibrated ridge point"),
)

TELEMETRY = _in(
    "NVML telemetry (attnbench.telemetry.TelemetrySampler)",
    _f("sm_clock_mhz_mean", "number", "MHz", "run", "some", "GPU: mean SM clock while timed"),
    _f("sm_clock_mhz_min", "number", "MHz", "run", "some", "GPU: lowest SM clock"),
    _f("mem_clock_mhz_mean", "number", "MHz", "run", "some", "GPU: mean memory clock"),
    _f("power_w_mean", "number", "W", "run", "some", "GPU: mean board power"),
    _f("power_w_max", "number", "W", "run", "some", "GPU: highest board power"),
    _f("temp_c_max", "number", "degC", "run", "some", "GPU: highest temperature"),
    _f("throttle_reasons", "array", "", "run", "some", "GPU: clock-event reasons seen", items="string"),
    _f("throttled", "boolean", "", "run", "some", "GPU: a reason other than sync_boost was seen"),
    _f("telemetry_samples", "integer", "", "run", "some", "GPU: NVML samples taken"),
    _f("telemetry", "string", "", "run", "some", "GPU: why there are no telemetry samples"),
)

WORKER = _in(
    "the worker (attnbench.runner.worker, attnbench.runner.multi_gpu)",
    _f("point_wall_s", "number", "s", "run", "ok",
       "the whole point's wall time: check, compiles, warm-up, timing"),
    _f("case_inputs_s", "number", "s", "run", "ok", "building the case's inputs, charged to its first point"),
    _f("finished_at", "string", "", "run", "ok", "when the point ended (ISO 8601, UTC, milliseconds)"),
    _f("worker_device", "string", "", "config", "some", "--devices: the worker that measured the point"),
)

PROFILE = _in(
    "a profile (attnbench.profile: ncu and the torch profiler)",
    _f("profile_tool", "string", "", "config", "some", "ncu or torch"),
    _f("profile_status", "string", "", "host", "some",
       "a merged row: the profile's own status", enum=STATUSES),
    _f("profile_reason", "string", "", "host", "some", "a merged row: the profile's own reason"),
    _f("ncu_kernel_count", "integer", "", "host", "some", "kernels ncu profiled in the call"),
    _f("ncu_duration_ms", "number", "ms", "run", "some", "sum of their durations", nullable=True),
    _f("dram_read_bytes", "integer", "bytes", "run", "some", "DRAM bytes read", nullable=True),
    _f("dram_write_bytes", "integer", "bytes", "run", "some", "DRAM bytes written", nullable=True),
    _f("min_read_bytes", "integer", "bytes", "config", "some", "the model's fewest bytes read"),
    _f("dram_read_ratio", "number", "", "run", "some", "dram_read_bytes / min_read_bytes", nullable=True),
    _f("dram_total_ratio", "number", "", "run", "some", "DRAM bytes read and written / min_hbm_bytes",
       nullable=True),
    _f("ncu_main_kernel", "string", "", "host", "some", "the longest kernel", nullable=True),
    _f("ncu_main_kernel_share", "number", "fraction", "run", "some",
       "its share of the duration", nullable=True),
    _f("ncu_l2_hit_pct", "number", "%", "run", "some", "L2 hit rate, duration-weighted", nullable=True),
    _f("ncu_occupancy_pct", "number", "%", "run", "some",
       "achieved occupancy, duration-weighted", nullable=True),
    _f("ncu_sm_throughput_pct", "number", "%", "run", "some",
       "SM throughput, duration-weighted", nullable=True),
    _f("ncu_dram_throughput_pct", "number", "%", "run", "some", "DRAM throughput, duration-weighted",
       nullable=True),
    _f("ncu_tensor_pipe_pct", "number", "%", "run", "some", "tensor pipe activity, duration-weighted",
       nullable=True),
    _f("ncu_kernels", "array", "", "run", "some", "one record per kernel ncu profiled", items="object"),
    _f("ncu_report", "string", "", "run", "some", "the .ncu-rep file in the run directory", nullable=True),
    _f("torch_calls", "integer", "", "config", "some", "calls the torch profiler recorded"),
    _f("torch_work", "string", "", "config", "some", "gpu kernels or cpu operators"),
    _f("torch_kernels_per_call", "number", "", "host", "some", "kernels (operators) per call"),
    _f("torch_distinct_kernels", "integer", "", "host", "some", "distinct kernels"),
    _f("torch_busy_ms_per_call", "number", "ms", "run", "some", "kernel busy time per call"),
    _f("torch_gap_us_mean", "number", "us", "run", "some", "mean gap between kernels"),
    _f("torch_gap_us_max", "number", "us", "run", "some", "longest gap between kernels"),
    _f("torch_idle_share", "number", "fraction", "run", "some",
       "share of the span no kernel ran", nullable=True),
    _f("torch_main_kernel", "string", "", "host", "some", "the kernel with the most time", nullable=True),
    _f("torch_kernels", "array", "", "run", "some", "the top kernels with their times", items="object"),
    _f("torch_trace", "string", "", "run", "some", "the trace file in the run directory", nullable=True),
)

RUN_COMMAND = _in(
    "attnbench run --baseline-backend (attnbench.run_cli.add_speedup)",
    _f("baseline_backend", "string", "", "config", "some", "the backend the speed-ups are against"),
    _f("speedup_vs_baseline", "number", "", "run", "some",
       "baseline latency_ms_p50 / this row's; null unless both ok",
       nullable=True),
)

RETIRED = _in(
    "older runs (no longer written)",
    _f("thermal_warmup_calls", "integer", "", "run", "some", "calls run until the clock settled (now rounds)",
       retired=True),
)

FIELDS: tuple[Field, ...] = (IDENTITY + CASE + POINT + MEMORY + CHECK + POOL + BACKEND_INFO + TIMING + THERMAL
                             + ACHIEVED + TELEMETRY + WORKER + PROFILE + RUN_COMMAND + RETIRED)
BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
