// The online-softmax step of the CPU kernels: one block of keys folded into the running max, sum and
// float32 output of one (query row, query head) pair.
//
// Each pair keeps m (the largest score so far), l (the sum of exp(score - m)) and acc (the sum of
// exp(score - m) * v); a block with a larger max rescales l and acc by exp(m_old - m_new). Scores are
// natural-log units (the softmax scale is already in them). A pair that has seen no score yet has
// m = -inf; it is shifted by 0 instead, since exp(-inf - -inf) would be NaN (for every finite max the
// shift is the max itself, so this changes nothing there).
#pragma once

#include <cmath>
#include <cstdint>

namespace attnbench_cpu {

// scores[t0, n): the block's scores for this pair, block_max their largest; they are overwritten with
// the weights exp(score - m_new). v: the block's value rows, row t at v + t * v_stride (d floats).
inline void online_softmax_update(float* scores, int t0, int n, float block_max, float& run_max,
                                  float& run_sum, float* acc, const float* v, int64_t v_stride, int d) {
  const float new_max = block_max > run_max ? block_max : run_max;
  const float shift = new_max == -INFINITY ? 0.0f : new_max;  // no score seen yet: no NaN
  const float rescale = std::exp(run_max - shift);  // 0 on the first block (max was -inf)
  float block_sum = 0.0f;
  for (int t = t0; t < n; ++t) {
    scores[t] = std::exp(scores[t] - shift);
    block_sum += scores[t];
  }
  run_sum = run_sum * rescale + block_sum;
  run_max = new_max;
#pragma omp simd
  for (int j = 0; j < d; ++j) acc[j] *= rescale;
  for (int t = t0; t < n; ++t) {
    const float w = scores[t];
    const float* vt = v + t * v_stride;
#pragma omp simd
    for (int j = 0; j < d; ++j) acc[j] += w * vt[j];
  }
}

}  // namespace attnbench_cpu
