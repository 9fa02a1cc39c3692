"""One colour per KV-cache memory category, shared by every fragmentation figure (the study's own
figures and the report's), so a category reads the same wherever it is drawn."""

from __future__ import annotations

CATEGORY_COLORS = {
    "token_states": "#2ca02c",  # green: memory holding tokens
    "reserved": "#ffbf00",  # amber: held for tokens not generated yet
    "internal": "#d62728",  # red: inside allocations, never used
    "external": "#9467bd",  # purple: free but unusable for the next allocation
    "other": "#bbbbbb",  # light grey: free memory
}
