"""Two fixes that let Triton 3.6's interpreter (TRITON_INTERPRET=1) run these kernels on a CPU.

1. NumPy >= 2.4: the interpreter holds every scalar as a one-element array and converts it for
   Python's `range` with `int(array)`; NumPy 2.4 made that conversion of a 1-d array a TypeError, so
   any loop whose bounds come from a loaded length (every varlen kernel) fails. `__index__` is
   rewrapped to read the single element.
2. bf16 `tl.dot`: the interpreter stores bf16 as raw uint16 bits and hands them to np.matmul as
   integers, so a bf16 dot returns garbage. The operands are widened to float32 first (exact: bf16 is
   a truncated float32), which is what the tensor cores compute as well (bf16 products, fp32 sums).
3. float32 -> bf16 casts: the interpreter truncates the mantissa, while compiled Triton's `.to(tl.bfloat16)`
   rounds to nearest even (cvt.rn.bf16.f32). Truncation doubles the rounding error and biases it toward
   zero, so a kernel checked on the CPU looked up to ~3x less accurate than it is on a GPU. The cast is
   made to round to nearest even, NaN kept NaN.
Only the interpreter is touched (never compiled kernels); each fix is skipped where not needed.
"""

from __future__ import annotations

import numpy as np


def _bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def _f32_to_bf16_bits_rne(values: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    # Round to nearest even: add 0x7FFF plus the lowest kept bit, then drop the low 16 bits.
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
    nan = np.isnan(values)
    return np.where(nan, (bits >> np.uint32(16)) | np.uint32(0x40), rounded).astype(np.uint16)


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

    original_cast = getattr(builder, "cast_impl", None)
    if original_cast is not None and not getattr(original_cast, "_attnbench_compat", False):

        def cast_impl(self, src, dst_type):
            if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
                return interpreter.TensorHandle(_f32_to_bf16_bits_rne(src.data), dst_type.scalar)
            return original_cast(self, src, dst_type)

        cast_impl._attnbench_compat = True  # type: ignore[attr-defined]
        builder.cast_impl = cast_impl  # create_fp_trunc and the other casts call self.cast_impl
