"""ShareGPT-like and Alpaca-like request lengths (input and output tokens), from published statistics.

What is published (Kwon et al., "Efficient Memory Management for Large Language Model Serving with
PagedAttention", SOSP 2023, §6.1 and Figure 11, OPT tokenizer):
- ShareGPT: mean input 161.31 tokens, mean output 337.99 tokens; "8.4x longer input prompts and
  5.8x longer outputs on average than Alpaca, with higher variance".
- Alpaca: mean input 19.31 tokens, mean output 58.45 tokens.
- OPT's maximum sequence length: 2048 tokens (input + output).
What is not published as numbers: the spread (Figure 11 shows histograms only). Each length here is a
discretised log-normal (ceil of a log-normal draw, at least 1 token); the log-space standard deviations
below are assumptions of this module (ShareGPT wider than Alpaca, as the paper says), and the pair
(input, output) is truncated to input + output <= 2048. The log-space means are then solved so that the
truncated distribution has exactly the published means, so truncation does not shift them.
Results that depend on the spread say so (see the fragmentation study's notes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MAX_SEQ_LEN = 2048


@dataclass(frozen=True)
class LengthStats:
    name: str
    mean_input: float  # published
    mean_output: float  # published
    sigma_input: float  # assumed log-space standard deviation
    sigma_output: float  # assumed log-space standard deviation
    source: str


SHAREGPT = LengthStats(
    "sharegpt",
    161.31,
    337.99,
    sigma_input=1.0,
    sigma_output=0.8,
    source="Kwon et al. SOSP'23 §6.1 / Fig. 11 (means); spreads assumed",
)
ALPACA = LengthStats(
    "alpaca",
    19.31,
    58.45,
    sigma_input=0.5,
    sigma_output=0.8,
    source="Kwon et al. SOSP'23 §6.1 / Fig. 11 (means); spreads assumed",
)
DATASETS = {"sharegpt": SHAREGPT, "alpaca": ALPACA}


def _ceil_lognormal_pmf(mu: float, sigma: float, max_len: int) -> np.ndarray:
    """pmf[l] = P(ceil(X) = l) for l = 0..max_len, X log-normal(mu, sigma); l = 0 folded into 1."""
    edges = np.arange(max_len + 1, dtype=np.float64)
    z = (np.log(np.maximum(edges, 1e-300)) - mu) / (sigma * math.sqrt(2.0))
    cdf = 0.5 * (1.0 + np.array([math.erf(x) for x in z]))
    cdf[0] = 0.0
    pmf = np.zeros(max_len + 1)
    pmf[1:] = np.diff(cdf)
    pmf[1] += cdf[1]  # draws below 1 token count as 1 token
    return pmf


def _truncated_means(mu_i: float, mu_o: float, st: LengthStats, max_len: int):
    p_in = _ceil_lognormal_pmf(mu_i, st.sigma_input, max_len)
    p_out = _ceil_lognormal_pmf(mu_o, st.sigma_output, max_len)
    c_out = np.cumsum(p_out)  # c_out[m] = P(output <= m)
    c_o_x = np.cumsum(p_out * np.arange(max_len + 1))  # sum of o * p(o) for o <= m
    room = np.clip(max_len - np.arange(max_len + 1), 0, max_len)  # outputs allowed after input l
    w = p_in * c_out[room]
    z = w.sum()
    mean_in = float((w * np.arange(max_len + 1)).sum() / z)
    mean_out = float((p_in * c_o_x[room]).sum() / z)
    return p_in, p_out, c_out, room, mean_in, mean_out


@lru_cache(maxsize=8)
def _solve(name: str, max_len: int) -> tuple[float, float]:
    """Log-space means giving the published means after discretisation and truncation."""
    st = DATASETS[name]
    mu_i = math.log(st.mean_input) - st.sigma_input**2 / 2
    mu_o = math.log(st.mean_output) - st.sigma_output**2 / 2
    for _ in range(200):
        *_, m_in, m_out = _truncated_means(mu_i, mu_o, st, max_len)
        if abs(m_in / st.mean_input - 1) < 1e-7 and abs(m_out / st.mean_output - 1) < 1e-7:
            break
        mu_i += math.log(st.mean_input / m_in)
        mu_o += math.log(st.mean_output / m_out)
    return mu_i, mu_o


def dataset_lengths(
    name: str, n: int, rng: np.random.Generator, max_len: int = MAX_SEQ_LEN
) -> tuple[np.ndarray, np.ndarray]:
    """n (input, output) length pairs of dataset `name`, input + output <= max_len, int64 arrays."""
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is not one of {sorted(DATASETS)}")
    st = DATASETS[name]
    mu_i, mu_o = _solve(name, max_len)
    p_in, p_out, c_out, room, *_ = _truncated_means(mu_i, mu_o, st, max_len)
    w = p_in * c_out[room]
    cdf_in = np.cumsum(w / w.sum())
    inputs = np.minimum(np.searchsorted(cdf_in, rng.random(n), side="right"), max_len - 1)
    inputs = np.maximum(inputs, 1)
    # Output given input: inverse CDF of the output pmf restricted to o <= max_len - input.
    u = rng.random(n) * c_out[room[inputs]]
    outputs = np.searchsorted(c_out, u, side="right")
    outputs = np.clip(outputs, 1, max_len - inputs)
    return inputs.astype(np.int64), outputs.astype(np.int64)


def sharegpt_lengths(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """ShareGPT-like (input_lens, output_lens): means 161.31 / 337.99 tokens, input + output <= 2048."""
    return dataset_lengths("sharegpt", n, rng)


def alpaca_lengths(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Alpaca-like (input_lens, output_lens): means 19.31 / 58.45 tokens, input + output <= 2048."""
    return dataset_lengths("alpaca", n, rng)


def expected_means(name: str, max_len: int = MAX_SEQ_LEN) -> tuple[float, float]:
    """The exact means of the sampler (equal to the published ones by construction)."""
    st = DATASETS[name]
    *_, m_in, m_out = _truncated_means(*_solve(name, max_len), st, max_len)
    return m_in, m_out
