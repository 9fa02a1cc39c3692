"""Input copies for timing rotation (attnbench.inputs.clone_inputs): other addresses, the same
values, one shared reference; a copy whose output is wrong is caught by the per-copy check."""

from __future__ import annotations

from dataclasses import replace

import torch

from attnbench.backends import get_backend
from attnbench.case import Case
from attnbench.inputs import build_inputs, clone_inputs
from attnbench.reference import check_output


def _case() -> Case:
    return Case("copies", "decode", (1, 1, 1), (40, 7, 65), 4, 2, 32, "fp32", True, block_size=16)


def test_a_clone_lies_elsewhere_holds_the_same_values_and_shares_the_reference() -> None:
    inputs = build_inputs(_case(), "cpu")
    copy = clone_inputs(inputs)
    assert inputs.paged is not None and copy.paged is not None
    pairs = ((inputs.q, copy.q), (inputs.k, copy.k), (inputs.paged.k_cache, copy.paged.k_cache),
             (inputs.paged.v_cache, copy.paged.v_cache), (inputs.paged.block_tables, copy.paged.block_tables))
    for a, b in pairs:
        assert a.data_ptr() != b.data_ptr() and torch.equal(a, b)
    assert copy.reference is inputs.reference and copy.error_baseline is inputs.error_baseline
    copy.paged.v_cache.add_(1.0)  # writing a copy leaves the original alone
    assert not torch.equal(copy.paged.v_cache, inputs.paged.v_cache)


def test_each_copy_is_checked_against_the_shared_reference() -> None:
    case = _case()
    inputs = build_inputs(case, "cpu")
    backend = get_backend("naive")
    good = clone_inputs(inputs)
    prepared = backend.prepare(case, good)
    assert check_output(prepared.to_packed(prepared.run()), good).ok
    bad = clone_inputs(inputs)
    assert bad.paged is not None
    seq2_block = int(bad.paged.block_tables[2, 3])  # sequence 2's fourth block (tokens 48-63)
    bad.paged.k_cache[seq2_block].mul_(-1.0)  # a copy whose cache was corrupted after the reference
    bad = replace(bad, k=bad.k.clone())
    broken = backend.prepare(case, bad)
    check = check_output(broken.to_packed(broken.run()), bad)
    assert not check.ok and check.seq == 2
