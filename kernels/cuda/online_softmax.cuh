// The online-softmax arithmetic of the CUDA kernels (flash_attention.cu, paged_attention.cu), in base 2.
//
// Per row (flash: a query row; paged decode: a query head) the kernels keep the running max m of the
// scores seen so far (in the kernel's score units), the running sum l of the weights and an
// unnormalised output. A tile of scores s with largest value tile_max moves the max to
// m_new = fmaxf(m, tile_max); each score becomes the weight exp2(s * scale - shift), and l and the
// output are rescaled by exp2(m * scale - shift), where shift = m_new * scale and scale turns score
// units into base-2 logits (flash: softmax scale * log2 e on raw q.k; paged: 1, its logits are
// already base 2). How the max and the sum are reduced over lanes differs per kernel (quad shuffles
// over registers, a warp over shared memory) and stays there; the arithmetic is here.
//
// A row that has seen no visible key yet (every score -inf: before its window or past its causal
// diagonal) has m_new = -inf; exp2(-inf - -inf) would be NaN, so its shift is 0 instead and its
// weights and rescale are exp2(-inf) = 0. For a finite m_new the shift is m_new * scale exactly as
// written out before, so the guard changes no result.
#pragma once

#include <cuda_runtime.h>

#include "common.cuh"

namespace attnbench {

// What exp2's argument is shifted by once the row's max is m_new (0 while the row has seen nothing).
__device__ __forceinline__ float online_softmax_shift(float m_new, float scale) {
  return m_new == -INFINITY ? 0.f : m_new * scale;
}

// The weight of score s: exp2(s * scale - shift), one FMA and one MUFU op.
__device__ __forceinline__ float online_softmax_weight(float s, float scale, float shift) {
  return fast_exp2(fmaf(s, scale, -shift));
}

// The factor the running sum and output are rescaled by when the max moves from m_old (0 when
// m_old = -inf, i.e. on the row's first visible tile).
__device__ __forceinline__ float online_softmax_rescale(float m_old, float scale, float shift) {
  return fast_exp2(m_old * scale - shift);
}

}  // namespace attnbench
