"""Two fixes that let Triton 3.6's interpreter (TRITON_INTERPRET=1) run these kernels on a CPU.

1. NumPy >= 2.4: the interpreter holds every scalar as a one-element array and converts it for
   Python's `range` with `int(array)`; NumPy 2.4 made that conversion of a 1-d array a TypeError, so
   any loop whose bounds come from a loaded length (every varlen kernel) fails. `__index__` is
   rewrapped to read the single element.
2. bf16 `tl.dot`: the interpreter stores bf16 as raw uint16 bits and hands them to np.matmul as
   integers, so a bf16 dot returns garbage. The operands are widened to float32 first (exact: bf16 is
   a truncated float32), which is what the tensor cores compute as well (bf16 products, fp32 sums).
Only the interpreter is touched (never compiled kernels); each fix is skipped where not needed.
"""

from __future__ import annotations

import numpy as np


def _bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def apply() -> None:
    try:
        import triton.language as tl
        from triton.runtime import interpreter
    except Exception:  # no interpreter in this Triton build: nothing to fix
        return

    original_patch = getattr(interpreter, "_patch_lang_tensor", None)
    if original_patch is not None and not getattr(original_patch, "_attnbench_compat", False):

        def patched(tensor, scope):
            original_patch(tensor, scope)
            scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

        patched._attnbench_compat = True  # type: ignore[attr-defined]
        interpreter._patch_lang_tensor = patched

    builder = getattr(interpreter, "InterpreterBuilder", None)
    original_dot = getattr(builder, "create_dot", None)
    if original_dot is not None and not getattr(original_dot, "_attnbench_compat", False):

        def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
            if a.dtype == tl.bfloat16 or b.dtype == tl.bfloat16:
                a_data = _bf16_bits_to_f32(a.data) if a.dtype == tl.bfloat16 else a.data.astype(np.float32)
                b_data = _bf16_bits_to_f32(b.data) if b.dtype == tl.bfloat16 else b.data.astype(np.float32)
                out = np.matmul(a_data, b_data, dtype=np.float32).astype(d.data.dtype) + d.data
                return interpreter.TensorHandle(out, d.dtype.scalar)
            return original_dot(self, a, b, d, input_precision, max_num_imprecise_acc)

        create_dot._attnbench_compat = True  # type: ignore[attr-defined]
        builder.create_dot = create_dot
