"""Published figures of the vLLM paper that the memory study sets up from or compares with.

Source: W. Kwon et al., "Efficient Memory Management for Large Language Model Serving with
PagedAttention", SOSP 2023 (arXiv 2309.06180). Values are as printed in the paper; fractions of KV
memory are stored as fractions (0.204 for the printed 20.4%). Nothing here is measured by attnbench.
"""

from __future__ import annotations

CITATION = "Kwon et al., SOSP 2023 (arXiv 2309.06180)"

# Setup (§3 and Table 1): OPT-13B on one A100-40GB.
OPT_13B = {"num_layers": 40, "hidden_size": 5120, "dtype_bytes": 2}  # §3: 2 x 5120 x 40 x 2 B = 800 KB/token
TABLE1_13B = {
    "gpu": "A100-40GB",
    "total_gpu_memory_gb": 40,
    "parameter_size_gb": 26,
    "kv_cache_memory_gb": 12,  # 12 GiB / 800 KiB per token = 15,728 slots: the table's "15.7K"
    "max_kv_cache_slots": 15_700,
}
MAX_SEQ_LEN = 2048  # §3: OPT generates sequences of up to 2,048 tokens

# Figure 2: average share of KV-cache memory during the §6.2 experiment (basic sampling).
# The paper prints token states / reservation / internal fragmentation / "external fragmentation &
# others"; Orca (Oracle) has no internal-fragmentation bar and the vLLM bar is labelled only with its
# token-state share. The caption names the §6.2 experiment, not the trace; the Orca (Max) numbers fit
# ShareGPT only (20.4% of 15.7K slots over 7 requests is ~458 tokens each; Alpaca requests average 78).
FIGURE2: dict[str, dict[str, float | None]] = {
    "orca-max": {"token_states": 0.204, "reserved": 0.133, "internal": 0.573, "external_other": 0.089},
    "orca-pow2": {"token_states": 0.268, "reserved": 0.179, "internal": 0.136, "external_other": 0.416},
    "orca-oracle": {"token_states": 0.382, "reserved": 0.252, "internal": None, "external_other": 0.366},
    "paged": {"token_states": 0.963, "reserved": None, "internal": None, "external_other": None},
}
FIGURE2_DATASET = "sharegpt"
FIGURE2_BLOCK_SIZE = 16  # vLLM's default block size (§7.2)

# Figure 13: average number of batched requests serving OPT-13B, ShareGPT at 2 req/s, Alpaca at 30 req/s.
FIGURE13_RATES = {"sharegpt": 2.0, "alpaca": 30.0}
FIGURE13 = {
    "sharegpt": {"orca-max": 7.00, "orca-pow2": 9.81, "orca-oracle": 13.62, "paged": 30.42},
    "alpaca": {"orca-max": 7.00, "orca-pow2": 43.24, "orca-oracle": 72.75, "paged": 132.44},
}

# §6.1 / Figure 11: mean input and output lengths (tokens) of the two traces.
FIGURE11_MEANS = {"sharegpt": (161.31, 337.99), "alpaca": (19.31, 58.45)}

# §7.2 / Figure 18b (end-to-end latency vs block size, not memory): block sizes 16 to 128 do best on
# ShareGPT; on Alpaca 16 and 32 do well and larger blocks hurt "as the sequences become shorter than
# the block sizes". vLLM's default is 16.
FIGURE18B_TEXT = "ShareGPT: block sizes 16-128 best; Alpaca: 16 and 32 good, larger blocks degrade"


def paper_values(dataset: str, policy: str, block_size: int | None) -> dict[str, float | None]:
    """The paper's figures for one study row (None where the paper reports none)."""
    fig2 = FIGURE2.get(policy, {}) if dataset == FIGURE2_DATASET else {}
    is_fig_row = policy != "paged" or block_size == FIGURE2_BLOCK_SIZE
    if not is_fig_row:
        fig2 = {}
    return {
        "paper_token_states": fig2.get("token_states"),
        "paper_reserved": fig2.get("reserved"),
        "paper_internal": fig2.get("internal"),
        "paper_external_other": fig2.get("external_other"),
        "paper_mean_batched_requests": FIGURE13.get(dataset, {}).get(policy) if is_fig_row else None,
    }
