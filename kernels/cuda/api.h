// The plain C ABI of libattnbench_cuda.so, loaded from Python with ctypes (attnbench/cuda_build.py).
//
// Every launch function takes raw device pointers, sizes and a cudaStream_t passed as void*, enqueues
// its kernels on that stream and returns 0, or a non-zero code with a message readable through
// attnbench_last_error(): 1 = invalid argument (nothing launched), 2 = CUDA error at launch.
// Launches are asynchronous: errors inside a running kernel surface at the next synchronisation.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

enum { ATTNBENCH_OK = 0, ATTNBENCH_EINVAL = 1, ATTNBENCH_ECUDA = 2 };
enum { ATTNBENCH_FP16 = 0, ATTNBENCH_BF16 = 1 };
// K/V storage of the paged decode: the query's dtype, or fp8 e4m3 bytes with float32 scales.
enum { ATTNBENCH_KV_AUTO = 0, ATTNBENCH_KV_FP8_E4M3 = 1 };

// Version of this ABI; bumped whenever a signature below changes (2: window, softcap, alibi_slopes;
// 3: the tensor-core paged decode and its occupancy query; 4: the paged decode's kv_dtype and scales).
int attnbench_abi_version(void);

// Message of the last failed call on this host thread ("" if none).
const char* attnbench_last_error(void);

// Paged-attention decode (one query token per sequence) over an NHD block pool.
//   out, q:            (batch, num_q_heads, head_dim), contiguous.
//   k_cache, v_cache:  (num_blocks, block_size, num_kv_heads, head_dim), contiguous.
//   block_tables:      int32 (batch, table_stride); kv_lens: int32 (batch,), each >= 1.
//   window:            sliding window, < 0 = none: the query (at position kv_len - 1) sees tokens
//                      >= kv_len - 1 - window; tokens and v2 partitions before that are never read.
//   softcap:           0 = none; > 0: each score s (after softmax_scale) becomes softcap * tanh(s / softcap)
//                      (tanh.approx.f32: relative error ~2^-11, see common.cuh).
//   alibi_slopes:      null = none; else device float32 (num_q_heads,): score -= slope[h] * (kv_len - 1 - j),
//                      after the soft-cap.
//   partition_tokens:  0 = v1 (one pass per sequence and KV head); > 0 = v2, the context cut into
//                      partitions of this many tokens (a multiple of 64), merged by a second kernel.
//   part_acc:          v2 workspace, float32 (batch, num_q_heads, max_partitions, head_dim).
//   part_ml:           v2 workspace, float32 (batch, num_q_heads, max_partitions, 2).
//   max_partitions:    >= ceil(max(kv_lens) / partition_tokens).
//   kv_dtype:          ATTNBENCH_KV_AUTO (k_cache, v_cache in dtype; the scales unused) or
//                      ATTNBENCH_KV_FP8_E4M3 (one byte per element, float8 e4m3fn; tensor-core decode only):
//                      an element stands for byte * scale, k_scale / v_scale device float32 of kv_scales
//                      entries, 1 (per tensor) or num_kv_heads (per KV head), as vLLM stores them.
int attnbench_paged_decode(void* out, const void* q, const void* k_cache, const void* v_cache,
                           const int* block_tables, const int* kv_lens, int batch, int num_q_heads,
                           int num_kv_heads, int head_dim, int block_size, int table_stride, int dtype,
                           float softmax_scale, int window, float softcap, const float* alibi_slopes,
                           int partition_tokens, float* part_acc, float* part_ml, int max_partitions,
                           int kv_dtype, const float* k_scale, const float* v_scale, int kv_scales, void* stream);

// The same decode with tensor-core dot products (impl "tc"): same arguments, same v1/v2 split and
// workspaces; up to 16 query heads of a KV head's group per block (the MMA's rows), so
// max_partitions and the workspaces are as for attnbench_paged_decode. The only one that reads fp8 K/V.
int attnbench_paged_decode_tc(void* out, const void* q, const void* k_cache, const void* v_cache,
                              const int* block_tables, const int* kv_lens, int batch, int num_q_heads,
                              int num_kv_heads, int head_dim, int block_size, int table_stride, int dtype,
                              float softmax_scale, int window, float softcap, const float* alibi_slopes,
                              int partition_tokens, float* part_acc, float* part_ml, int max_partitions,
                              int kv_dtype, const float* k_scale, const float* v_scale, int kv_scales,
                              void* stream);

// How many blocks of the paged decode kernel fit on one SM (for the host's v1/v2 choice); 0 on error.
int attnbench_paged_decode_blocks_per_sm(int head_dim, int num_q_heads, int num_kv_heads, int dtype);
// The same for the tensor-core kernel (its block shape depends on the head dim and the K/V storage).
int attnbench_paged_decode_tc_blocks_per_sm(int head_dim, int dtype, int kv_dtype);

// Flash-attention forward over packed varlen sequences (prefill, or a chunk at the end of a context).
//   q, out:  (total_q, num_q_heads, head_dim); k, v: (total_kv, num_kv_heads, head_dim); contiguous.
//   cu_seqlens_q / cu_seqlens_k: int32 (batch + 1,), q_len <= kv_len per sequence.
//   causal:  bottom-right aligned (query i sees keys 0 .. kv_len - q_len + i).
//   window:  sliding window, < 0 = none: query i (position p = kv_len - q_len + i) sees keys >= p - window;
//            KV tiles before the block's first row's window are never loaded.
//   softcap: 0 = none; > 0: scores s (after softmax_scale) become softcap * tanh(s / softcap) (tanh.approx).
//   alibi_slopes: null = none; else device float32 (num_q_heads,): score -= slope[h] * (p - j), after softcap.
//   config:  tile configuration (0 = default; see flash_attention.cu), for tuning experiments.
int attnbench_flash_fwd(void* out, const void* q, const void* k, const void* v, const int* cu_seqlens_q,
                        const int* cu_seqlens_k, int batch, int max_q_len, int num_q_heads,
                        int num_kv_heads, int head_dim, int dtype, int causal, float softmax_scale,
                        int window, float softcap, const float* alibi_slopes, int config, void* stream);

// Number of flash tile configurations (valid values of config are 0 .. n - 1).
int attnbench_flash_num_configs(void);

#ifdef __cplusplus
}

namespace attnbench {
// Records a message for attnbench_last_error() and returns code.
int set_error(int code, const char* fmt, ...);
// Checks cudaGetLastError() after a launch: 0, or ATTNBENCH_ECUDA with the message recorded.
int check_launch(const char* what);
}  // namespace attnbench
#endif
