// The plain C ABI of libattnbench_cpu.so, loaded from Python with ctypes (attnbench/cpu_build.py).
//
// Functions take raw host pointers and sizes, run to completion on the calling thread's OpenMP team
// and return 0, or a non-zero code with a message readable through attnbench_cpu_last_error():
// 1 = invalid argument (nothing computed).
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { ATTNBENCH_CPU_OK = 0, ATTNBENCH_CPU_EINVAL = 1 };
enum { ATTNBENCH_CPU_FP32 = 0, ATTNBENCH_CPU_FP16 = 1, ATTNBENCH_CPU_BF16 = 2 };

// Version of this ABI; bumped whenever a signature below changes.
int attnbench_cpu_abi_version(void);

// Message of the last failed call on this thread ("" if none).
const char* attnbench_cpu_last_error(void);

// float32 scratch one thread needs for attnbench_cpu_paged_attention with these sizes (0 on bad sizes).
int64_t attnbench_cpu_paged_scratch_floats(int num_q_heads, int num_kv_heads, int head_dim, int block_size,
                                           int query_tile);

// Paged attention over an NHD block pool: decode (one query per sequence), prefill and chunked prefill.
//   out, q:            (total_q, num_q_heads, head_dim), sequences packed; cu_seqlens_q int32 (batch + 1,).
//   k_cache, v_cache:  (num_blocks, block_size, num_kv_heads, head_dim), contiguous.
//   block_tables:      int32 (batch, table_stride), entries < num_blocks.
//   kv_lens:           int32 (batch,), q_len <= kv_len per sequence.
//   causal:            query i of a sequence sees keys 0 .. kv_len - q_len + i (bottom-right aligned).
//   window:            sliding window, < 0 = none: the query at absolute position p = kv_len - q_len + i
//                      sees only keys j >= p - window (blocks wholly before that are never read).
//   softcap:           0 = none; > 0: each score s (after softmax_scale) becomes softcap * tanh(s / softcap).
//   alibi_slopes:      null = none; else float32 (num_q_heads,): score -= slope[h] * (p - j), after softcap.
//   query_tile:        query rows one work item serves (with every query head of one KV head).
//   scratch:           float32, at least num_threads * attnbench_cpu_paged_scratch_floats(...) elements.
// Softmax is online (one pass over the blocks) and accumulates in float32; out has q's dtype.
int attnbench_cpu_paged_attention(void* out, const void* q, const void* k_cache, const void* v_cache,
                                  const int32_t* block_tables, const int32_t* kv_lens,
                                  const int32_t* cu_seqlens_q, int batch, int num_q_heads, int num_kv_heads,
                                  int head_dim, int num_blocks, int block_size, int table_stride, int dtype,
                                  int causal, float softmax_scale, int window, float softcap,
                                  const float* alibi_slopes, int query_tile, int num_threads, float* scratch,
                                  int64_t scratch_floats);

#ifdef __cplusplus
}
#endif
