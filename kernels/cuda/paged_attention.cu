// Paged-attention decode: one query token per sequence against a KV cache stored in fixed-size blocks
// that a per-sequence block table maps to places in a shared pool.
//
// KV layout used: the harness's NHD pool, k_cache/v_cache (num_blocks, block_size, num_kv_heads, D),
// unchanged. For one KV head, a token's key is D contiguous elements (128-512 bytes), so a row of
// D/8 lanes reads it with 16-byte loads that fill whole 32-byte sectors; the head interleaving only
// spaces consecutive tokens Hkv*D elements apart, which costs nothing once every sector fetched is
// used. No conversion is needed, and the kernel reads the same bytes a copy would.
//
// Work split. A thread block (128 threads) owns one sequence and one KV head, and up to GT of the
// query heads that share it (GQA): each K/V element is loaded once and used by all GT heads.
//   v1: the block walks the whole context (grid: KV heads x head tiles, batch).
//   v2: the context is cut into partitions of `partition_tokens` tokens, one block each (grid z), each
//       writing an unnormalised float32 partial output with its running max and sum; a second kernel
//       merges the partitions. This fills the GPU when batch x KV heads is small and contexts are long.
// Per block, K/V tiles of kTile tokens (8 KiB of K + 8 KiB of V) stream through a 3-stage cp.async
// pipeline into shared memory, addresses taken from the block table per token, so two tiles are in
// flight while one is computed. Each tile: logits (each row of D/8 lanes holds 8 dims of every query
// head in registers, dots its slice, reduces across the row by shuffles), an online-softmax update
// per head (running max and sum, base-2 exponentials with the scale folded into q), then P.V into
// per-thread float32 accumulators (8 dims x GT heads). Rows of lanes are merged once at the end.
//
// Patterns (run-time arguments, one compiled kernel for every window size and cap). Sliding window:
// the query at position ctx - 1 sees tokens >= ctx - 1 - window, so the walk starts at that token
// (v1), and in v2 a partition wholly before it returns at once, the first one it reaches starts
// mid-partition, and the merge kernel skips the partitions before it: the work and the K/V bytes read
// follow the window, not the context. Soft-cap: each base-2 logit goes through tanh.approx (folded
// constants below) before the softmax. ALiBi: then - slope_h * log2(e) * distance, one FMA.
#include <cuda_runtime.h>

// One file, ~980 lines, on purpose: the simt and tensor-core kernels (each as v1 and v2; tc also with an
// fp8 cache), the split-K reduce both use and the launch code share the parameters, the window's first
// token, the argument checks and the heads-per-block choice; read together, a change to one is seen in
// all (and the mutation tests plant shared faults once, in tests/mutation.py's PAGED_SHARED_MUTANTS).

#include <cuda_fp8.h>

#include <cstdint>
#include <type_traits>

#include "api.h"
#include "common.cuh"
#include "online_softmax.cuh"

namespace attnbench {
namespace {

struct PagedParams {
  void* out;
  const void* q;
  const void* k_cache;
  const void* v_cache;
  const int* block_tables;
  const int* kv_lens;
  float* part_acc;       // v2: (batch, Hq, max_partitions, D)
  float* part_ml;        // v2: (batch, Hq, max_partitions, 2): running max, running sum
  int num_q_heads;
  int num_kv_heads;
  int group;             // query heads per KV head
  int head_tiles;        // blocks per KV head: ceil(group / GT)
  int block_shift;       // log2(block_size)
  int table_stride;      // entries per block-table row
  int partition_tokens;  // v2 only
  int max_partitions;    // v2 only
  float scale_log2;      // softmax scale * log2(e): logits live in the base-2 domain
  int window;            // sliding-window left context in tokens; < 0 = none
  // Soft-cap on the base-2 logit x = s * log2(e): x -> cap_out * tanh(x * cap_in), cap_in =
  // 1 / (cap * log2(e)), cap_out = cap * log2(e) (the same as cap * tanh(s / cap), in base 2).
  float cap_in;          // 0 = no soft-cap
  float cap_out;
  const float* alibi_slopes;  // (num_q_heads,) or null: logit -= slope_h * (ctx - 1 - token)
};

// An fp8 cache's scales (tc only): an element stands for byte * k[kv_head * stride] (stride 0: one per
// tensor, 1: one per KV head), as vLLM keeps them. A kernel argument of its own, not PagedParams fields:
// past 128 bytes nvcc addresses that struct through a register, which changed the fp16/bf16 kernels' code.
struct KvScales {
  const float* k;
  const float* v;
  int stride;
};

// First token the decode query (at position ctx - 1) sees: 0, or ctx - 1 - window with a window.
__device__ __forceinline__ int window_start(int ctx, int window) {
  return window >= 0 && ctx - 1 > window ? ctx - 1 - window : 0;
}

template <int D>
struct DecodeShape {
  static constexpr int kThreads = 128;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kLanesPerRow = D / kVec;                           // 8, 16, 32
  static constexpr int kRowsPerWarp = 32 / kLanesPerRow;                  // 4, 2, 1 tokens per warp step
  static constexpr int kTile = 4096 / D;                                  // 64, 32, 16 tokens per stage
  static constexpr int kSteps = kTile / (kWarps * kRowsPerWarp);          // 4 compute steps per tile
  static constexpr int kLoadsPerThread = kTile * kLanesPerRow / kThreads;  // 4 copies per tensor
  static constexpr int kGroups = kWarps * kRowsPerWarp;                   // partial sums per output
  static constexpr int kStages = 3;
  static_assert(kSteps * kWarps * kRowsPerWarp == kTile, "tile must split evenly over the warps");
  static_assert(kLoadsPerThread * kThreads == kTile * kLanesPerRow, "copies must split evenly");
};

template <int D, int GT>
constexpr int decode_smem_bytes() {
  using S = DecodeShape<D>;
  constexpr int kv = 2 * S::kStages * S::kTile * D * 2;  // K and V stages, 2-byte elements
  constexpr int reduce = S::kGroups * GT * D * 4;        // end-of-block merge overlays the stages
  static_assert(reduce <= kv, "merge buffer must fit in the K/V stages");
  return kv + (GT * S::kTile + 3 * GT) * 4;              // + logits, alpha, max, sum
}

template <typename T, int D, int GT, bool kSplit>
__global__ void __launch_bounds__(DecodeShape<D>::kThreads) paged_decode_kernel(const PagedParams p) {
  using S = DecodeShape<D>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* k_smem = reinterpret_cast<T*>(smem_raw);                                     // [stage][token][D]
  T* v_smem = k_smem + S::kStages * S::kTile * D;                                 // [stage][token][D]
  float* logits = reinterpret_cast<float*>(v_smem + S::kStages * S::kTile * D);  // [GT][kTile]
  float* alpha_s = logits + GT * S::kTile;  // [GT] rescale of the accumulators for this tile
  float* max_s = alpha_s + GT;              // [GT] running max of the base-2 logits
  float* sum_s = max_s + GT;                // [GT] running sum of exp2(logit - max)

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int row_in_warp = lane / S::kLanesPerRow;  // which token of the warp's step this lane serves
  const int chunk = lane % S::kLanesPerRow;        // which 8 dims of the head

  const int seq = blockIdx.y;
  const int kv_head = blockIdx.x / p.head_tiles;
  const int g0 = (blockIdx.x % p.head_tiles) * GT;
  const int n_heads = min(GT, p.group - g0);
  const int q_head0 = kv_head * p.group + g0;

  const int ctx = p.kv_lens[seq];
  const int first = window_start(ctx, p.window);
  int begin = first, end = ctx;
  if constexpr (kSplit) {
    const int part0 = blockIdx.z * p.partition_tokens;
    if (part0 >= ctx) return;  // whole block leaves: this sequence is shorter than the partition grid
    end = min(ctx, part0 + p.partition_tokens);
    if (end <= first) return;  // wholly before the window: the merge skips this partition
    begin = max(part0, first);
  }

  // This lane's 8 dims of every query head, pre-scaled so that q.k is already a base-2 logit.
  float qf[GT][kVec];
  {
    const T* q = static_cast<const T*>(p.q) + (size_t(seq) * p.num_q_heads + q_head0) * D + chunk * kVec;
#pragma unroll
    for (int g = 0; g < GT; ++g) {
      if (g < n_heads) {
        vec8_to_float<T>(*reinterpret_cast<const uint4*>(q + size_t(g) * D), qf[g]);
#pragma unroll
        for (int j = 0; j < kVec; ++j) qf[g][j] *= p.scale_log2;
      } else {
#pragma unroll
        for (int j = 0; j < kVec; ++j) qf[g][j] = 0.f;  // padding head: computed, never stored
      }
    }
  }

  // ALiBi slopes of this block's heads in the base-2 domain (0 without ALiBi or for a padding head).
  float slope_l2[GT];
#pragma unroll
  for (int g = 0; g < GT; ++g) {
    const bool real = p.alibi_slopes != nullptr && g < n_heads;
    slope_l2[g] = real ? p.alibi_slopes[q_head0 + g] * 1.4426950408889634f : 0.f;
  }

  const int* table = p.block_tables + size_t(seq) * p.table_stride;
  const T* k_base = static_cast<const T*>(p.k_cache);
  const T* v_base = static_cast<const T*>(p.v_cache);
  const size_t token_stride = size_t(p.num_kv_heads) * D;  // elements between tokens of one block
  const int in_block_mask = (1 << p.block_shift) - 1;

  // Issue the copies of tile `tile` into stage `stage`: lane-consecutive 16-byte pieces of each token
  // row, the physical block looked up per token. Tokens past `end` are zero-filled, not read.
  auto load_tile = [&](int tile, int stage) {
    const int t0 = begin + tile * S::kTile;
#pragma unroll
    for (int i = 0; i < S::kLoadsPerThread; ++i) {
      const int idx = tid + i * S::kThreads;
      const int row = idx / S::kLanesPerRow;
      const int c = idx % S::kLanesPerRow;
      const int token = t0 + row;
      const bool valid = token < end;
      size_t offset = 0;
      if (valid) {
        const size_t block = static_cast<size_t>(table[token >> p.block_shift]);
        offset = ((block << p.block_shift) + (token & in_block_mask)) * token_stride + size_t(kv_head) * D +
                 c * kVec;
      }
      const int s = (stage * S::kTile + row) * D + c * kVec;
      cp_async_16(k_smem + s, k_base + offset, valid);
      cp_async_16(v_smem + s, v_base + offset, valid);
    }
    cp_async_commit();
  };

  const int n_tiles = (end - begin + S::kTile - 1) / S::kTile;
#pragma unroll
  for (int s = 0; s < S::kStages - 1; ++s) {
    if (s < n_tiles) {
      load_tile(s, s);
    } else {
      cp_async_commit();  // empty group keeps the wait counts uniform
    }
  }
  if (tid < GT) {
    max_s[tid] = -INFINITY;
    sum_s[tid] = 0.f;
  }

  float acc[GT][kVec];
#pragma unroll
  for (int g = 0; g < GT; ++g) {
#pragma unroll
    for (int j = 0; j < kVec; ++j) acc[g][j] = 0.f;
  }

  for (int tile = 0; tile < n_tiles; ++tile) {
    cp_async_wait<S::kStages - 2>();  // this thread's copies of `tile` have landed ...
    __syncthreads();                  // ... and everyone's; the stage refilled next is free
    {
      const int next = tile + S::kStages - 1;
      if (next < n_tiles) {
        load_tile(next, next % S::kStages);
      } else {
        cp_async_commit();
      }
    }
    const int stage = tile % S::kStages;
    const T* ks = k_smem + stage * S::kTile * D;
    const T* vs = v_smem + stage * S::kTile * D;
    const int t0 = begin + tile * S::kTile;

    // 1. Logits of this tile's tokens for every head.
#pragma unroll
    for (int step = 0; step < S::kSteps; ++step) {
      const int row = (step * S::kWarps + warp) * S::kRowsPerWarp + row_in_warp;
      float kf[kVec];
      vec8_to_float<T>(*reinterpret_cast<const uint4*>(ks + row * D + chunk * kVec), kf);
#pragma unroll
      for (int g = 0; g < GT; ++g) {
        float dot = 0.f;
#pragma unroll
        for (int j = 0; j < kVec; ++j) dot = fmaf(qf[g][j], kf[j], dot);
#pragma unroll
        for (int o = S::kLanesPerRow / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        if (p.cap_in != 0.f) dot = p.cap_out * fast_tanh(dot * p.cap_in);
        dot = fmaf(-slope_l2[g], float(ctx - 1 - (t0 + row)), dot);  // ALiBi (slope 0 when off)
        if (chunk == 0) logits[g * S::kTile + row] = (t0 + row < end) ? dot : -INFINITY;
      }
    }
    __syncthreads();

    // 2. Online softmax, one warp per head: new max, probabilities in place, running sum.
    for (int g = warp; g < GT; g += S::kWarps) {
      float m = -INFINITY;
      for (int i = lane; i < S::kTile; i += 32) m = fmaxf(m, logits[g * S::kTile + i]);
      m = warp_max(m);
      const float m_old = max_s[g];
      const float m_new = fmaxf(m_old, m);  // finite: every tile holds at least one valid token
      const float shift = online_softmax_shift(m_new, 1.f);  // logits are base 2 already: scale 1
      float sum = 0.f;
      for (int i = lane; i < S::kTile; i += 32) {
        const float e = online_softmax_weight(logits[g * S::kTile + i], 1.f, shift);
        logits[g * S::kTile + i] = e;
        sum += e;
      }
      sum = warp_sum(sum);
      __syncwarp();
      if (lane == 0) {
        const float a = online_softmax_rescale(m_old, 1.f, shift);  // 0 on the first tile (m_old = -inf)
        alpha_s[g] = a;
        sum_s[g] = sum_s[g] * a + sum;
        max_s[g] = m_new;
      }
    }
    __syncthreads();

    // 3. Rescale the accumulators and add P.V for this tile.
#pragma unroll
    for (int g = 0; g < GT; ++g) {
      const float a = alpha_s[g];
#pragma unroll
      for (int j = 0; j < kVec; ++j) acc[g][j] *= a;
    }
#pragma unroll
    for (int step = 0; step < S::kSteps; ++step) {
      const int row = (step * S::kWarps + warp) * S::kRowsPerWarp + row_in_warp;
      float vf[kVec];
      vec8_to_float<T>(*reinterpret_cast<const uint4*>(vs + row * D + chunk * kVec), vf);
#pragma unroll
      for (int g = 0; g < GT; ++g) {
        const float pr = logits[g * S::kTile + row];
#pragma unroll
        for (int j = 0; j < kVec; ++j) acc[g][j] = fmaf(pr, vf[j], acc[g][j]);
      }
    }
  }

  // Merge the kGroups partial accumulators of each (head, dim) through shared memory.
  cp_async_wait<0>();
  __syncthreads();
  float* red = reinterpret_cast<float*>(smem_raw);  // [kGroups][GT][D], overlays the K/V stages
  const int grp = warp * S::kRowsPerWarp + row_in_warp;
#pragma unroll
  for (int g = 0; g < GT; ++g) {
    float4* dst = reinterpret_cast<float4*>(red + (grp * GT + g) * D + chunk * kVec);
    dst[0] = make_float4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]);
    dst[1] = make_float4(acc[g][4], acc[g][5], acc[g][6], acc[g][7]);
  }
  __syncthreads();

  for (int i = tid; i < n_heads * D; i += S::kThreads) {
    const int g = i / D, d = i % D;
    float o = 0.f;
#pragma unroll
    for (int r = 0; r < S::kGroups; ++r) o += red[(r * GT + g) * D + d];
    const size_t row = size_t(seq) * p.num_q_heads + q_head0 + g;
    if constexpr (!kSplit) {
      static_cast<T*>(p.out)[row * D + d] = from_float<T>(o / sum_s[g]);
    } else {
      const size_t slot = row * p.max_partitions + blockIdx.z;
      p.part_acc[slot * D + d] = o;
      if (d == 0) {
        p.part_ml[slot * 2] = max_s[g];
        p.part_ml[slot * 2 + 1] = sum_s[g];
      }
    }
  }
}

// v2 merge: out = sum_i 2^(m_i - M) acc_i / sum_i 2^(m_i - M) l_i over the partitions of a sequence
// the window reaches (those wholly before it wrote nothing and are skipped).
template <typename T, int D>
__global__ void __launch_bounds__(128) paged_reduce_kernel(const PagedParams p) {
  const int head = blockIdx.x, seq = blockIdx.y;
  const int n_parts = (p.kv_lens[seq] + p.partition_tokens - 1) / p.partition_tokens;
  const int part0 = window_start(p.kv_lens[seq], p.window) / p.partition_tokens;  // first one in the window
  const size_t base = (size_t(seq) * p.num_q_heads + head) * p.max_partitions;
  const float* ml = p.part_ml + base * 2;
  float m = -INFINITY;
  for (int i = part0; i < n_parts; ++i) m = fmaxf(m, ml[2 * i]);
  float denom = 0.f;
  for (int i = part0; i < n_parts; ++i) denom += ml[2 * i + 1] * fast_exp2(ml[2 * i] - m);
  const float inv = 1.f / denom;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float o = 0.f;
    for (int i = part0; i < n_parts; ++i) o += fast_exp2(ml[2 * i] - m) * p.part_acc[(base + i) * D + d];
    static_cast<T*>(p.out)[(size_t(seq) * p.num_q_heads + head) * D + d] = from_float<T>(o * inv);
  }
}

// ---- tensor-core variant (impl "tc"): the same work split, QK^T and PV as m16n8k16 MMAs --------
// The query heads of a KV head's group are the 16 rows of the MMA's A operand (padding rows are zero
// queries: computed, never stored), so every K/V element loaded serves all of them on tensor cores;
// the simt kernel above does those dot products on FP32 cores with shuffle reductions, and on an H200
// they take as long as the tile's transfer (issue 20). Per block (4 warps, one sequence, one KV head,
// up to 16 query heads) K/V tiles of 64 tokens stream through a cp.async pipeline (stages per head
// dim below) into XOR-swizzled shared tiles; each warp owns 16 tokens of every tile and keeps its own
// online-softmax state (max, sum, output) over the tokens it saw, in registers, like one split of a
// flash-decoding pass. The four warps' states are merged once at the end through shared memory, and
// v2 partitions write the merged state for the split-K reduce kernel above. Scores follow the simt
// kernel's arithmetic: raw q.k times scale * log2 e is the base-2 logit, then the soft-cap and ALiBi.
// An fp8 cache (KV = __nv_fp8_e4m3, issue 20) is staged as its bytes, half of bf16's, and widened to T in
// registers after ldmatrix (fp8x2_to_pair, exact). A 16-byte ldmatrix row is then a whole 16-dim k-step:
// K's fragment gives lane (g, t) dims 4t..4t+3, so QK^T's k runs over the dims in another order, which
// Q's rows take too (stored reordered); V's transposed fragment gives dims 2g, 2g+1, so an output tile
// holds every other dim and the merge puts them back. The scales are one number per block (one KV head):
// q.(s_k k) = s_k (q.k) joins the logit scale, sum_j p_j (s_v v_j) = s_v sum_j p_j v_j multiplies the
// merged output once: the same sums, one fp32 rounding more, none per element.
constexpr int kTcRows = 16;  // MMA rows: query heads per block
// How far (base-2 logit units) a tile's max may pass the running max before the running max moves and
// the output is rescaled: 0 moves it on every rise, as the textbook online softmax does. 8 (FA4's
// conditional rescale) measured no faster on an H200 (kernels/notes/cuda.md, paged v2.3).
constexpr float kStaleMaxSlack = 0.f;

template <int D, int E = 2>  // E: bytes of a K/V element (2: fp16/bf16, 1: fp8 e4m3)
struct TcShape {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kTokensPerWarp = 16;  // one k-step of the PV MMA
  static constexpr int kTile = kWarps * kTokensPerWarp;  // 64 tokens per stage
  static constexpr int kStages = D == 64 ? 4 : D == 128 ? 3 : 2;  // 64 / 96 / 128 KiB of K+V (fp8: half)
  // Q's fragments stay in registers up to D 128 with a bf16/fp16 cache; at D 256 (64 more registers), and
  // with an fp8 cache (to fit 4 blocks per SM at D 128, below), they are re-read from shared memory.
  static constexpr bool kQInRegs = D <= 128 && E == 2;
  // Resident blocks per SM the registers must allow: an fp8 cache at D <= 128 needs 4 (128 registers)
  // so that 64 sequences x 8 KV heads (512 blocks) run in one wave on 132 SMs instead of 1.3.
  static constexpr int kMinBlocks = E == 1 && D <= 128 ? 4 : 1;
  static constexpr int kChunks = D / kVec;        // 16-byte chunks of a Q row
  static constexpr int kKvChunks = D * E / 16;    // ... of a K/V row
  static constexpr int kStageElems = kTile * D;
  static constexpr int kKvBytes = 2 * kStages * kStageElems * E;
  static constexpr int kMergeBytes = kWarps * kTcRows * (D + 2) * 4;  // per-warp O, max, sum
  static constexpr int kSmemBytes = kKvBytes + kTcRows * D * 2;       // + Q
  // the merge overlays the K/V stages, and Q too (read no more by then) at fp8 D 256
  static_assert(kMergeBytes <= kSmemBytes, "merge buffer must fit in the K/V stages and Q");
  static_assert(kTile * kKvChunks % kThreads == 0 && kTcRows * kChunks % kThreads == 0, "even copies");
  static_assert(D % 64 == 0, "swizzle needs >= 8 chunks per row");
};

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][D] tile of E-byte elements, chunks
// XOR-swizzled so that the 8 row addresses of an ldmatrix fall in 8 different bank groups: by row % 8,
// or for rows of 4 chunks (fp8 at D 64, two rows per 128 bytes) by (row / 2) % 4.
template <int D, int E = 2>
__device__ __forceinline__ int tc_swz(int row, int chunk) {
  constexpr int kChunks = D * E / 16;
  static_assert(kChunks % 8 == 0 || kChunks == 4, "swizzle needs 4 or a multiple of 8 chunks per row");
  if constexpr (kChunks == 4) return row * D + ((chunk ^ ((row >> 1) & 3)) * (16 / E));
  return row * D + ((chunk ^ (row & 7)) * (16 / E));
}

template <typename T, typename KV, int D, bool kSplit>
__global__ void __launch_bounds__(TcShape<D>::kThreads, TcShape<D, sizeof(KV)>::kMinBlocks)
    paged_decode_tc_kernel(const PagedParams p, const KvScales sc) {
  using S = TcShape<D, sizeof(KV)>;
  constexpr bool kFp8 = sizeof(KV) == 1;
  // The MMA operand type: T, or fp16 with an fp8 cache whatever T is. Every e4m3 value is an fp16
  // value, sm_89+ converts a pair to fp16 in one instruction (no bf16 form), and fp16 keeps more of P
  // and Q than bf16 does; Q in bf16 is exact in fp16 for 6.1e-5 <= |q| <= 65504 (attention queries).
  using M = std::conditional_t<kFp8, __half, T>;
  constexpr int kKvVec = 16 / sizeof(KV);  // K/V elements per 16-byte chunk
  extern __shared__ __align__(16) unsigned char smem_raw[];  // one declaration per file: the simt kernel's
  KV* k_smem = reinterpret_cast<KV*>(smem_raw);                            // [stage][token][D], swizzled
  KV* v_smem = k_smem + S::kStages * S::kStageElems;                       // [stage][token][D], swizzled
  T* q_smem = reinterpret_cast<T*>(v_smem + S::kStages * S::kStageElems);  // [16][D], swizzled

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;  // MMA fragment coordinates: rows g and g + 8, columns 2t, 2t+1

  const int seq = blockIdx.y;
  const int kv_head = blockIdx.x / p.head_tiles;
  const int h0 = (blockIdx.x % p.head_tiles) * kTcRows;
  const int n_heads = min(kTcRows, p.group - h0);
  const int q_head0 = kv_head * p.group + h0;

  const int seq_len = p.kv_lens[seq];
  const int first = window_start(seq_len, p.window);
  int begin = first, end = seq_len;
  if constexpr (kSplit) {
    const int part0 = blockIdx.z * p.partition_tokens;
    if (part0 >= seq_len) return;  // this sequence is shorter than the partition grid
    end = min(seq_len, part0 + p.partition_tokens);
    if (end <= first) return;  // wholly before the window: the merge skips this partition
    begin = max(part0, first);
  }

  const int* table = p.block_tables + size_t(seq) * p.table_stride;
  const KV* k_base = static_cast<const KV*>(p.k_cache);
  const KV* v_base = static_cast<const KV*>(p.v_cache);
  const size_t token_stride = size_t(p.num_kv_heads) * D;
  const int in_block_mask = (1 << p.block_shift) - 1;

  // Tile `tile` into stage `stage`: 16-byte pieces of each token row, its physical block looked up
  // per token; tokens at or past `end` are zero-filled without a read (their weight is 0 below).
  auto load_tile = [&](int tile, int stage) {
    const int t0 = begin + tile * S::kTile;
#pragma unroll
    for (int i = 0; i < S::kTile * S::kKvChunks / S::kThreads; ++i) {
      const int idx = tid + i * S::kThreads;
      const int row = idx / S::kKvChunks, c = idx % S::kKvChunks;
      const int token = t0 + row;
      const bool in_range = token < end;
      size_t offset = 0;
      if (in_range) {
        const size_t block = static_cast<size_t>(table[token >> p.block_shift]);
        offset = ((block << p.block_shift) + (token & in_block_mask)) * token_stride +
                 size_t(kv_head) * D + c * kKvVec;
      }
      const int dst = stage * S::kStageElems + tc_swz<D, sizeof(KV)>(row, c);
      cp_async_16(k_smem + dst, k_base + offset, in_range);
      cp_async_16(v_smem + dst, v_base + offset, in_range);
    }
  };

  // Q rows of this block's heads (zero rows past n_heads), in the first copy group with tile 0 (with an
  // fp8 cache through registers, below).
  const T* q = static_cast<const T*>(p.q) + (size_t(seq) * p.num_q_heads + q_head0) * D;
  if constexpr (!kFp8) {
#pragma unroll
    for (int i = 0; i < kTcRows * S::kChunks / S::kThreads; ++i) {
      const int idx = tid + i * S::kThreads;
      const int row = idx / S::kChunks, c = idx % S::kChunks;
      const bool real = row < n_heads;
      cp_async_16(q_smem + tc_swz<D>(row, c), real ? q + size_t(row) * D + c * kVec : q, real);
    }
  }
  const int n_tiles = (end - begin + S::kTile - 1) / S::kTile;
#pragma unroll
  for (int s = 0; s < S::kStages - 1; ++s) {
    if (s < n_tiles) load_tile(s, s);
    cp_async_commit();  // an empty group past the last tile keeps the wait counts uniform
  }
  if constexpr (kFp8) {
    // Q through registers, each k-step's eight dim pairs stored evens first: the A fragment ldmatrix
    // gives lane (g, t) is then dims 4t..4t+3 of the k-step, the dims fp8 K's fragment holds (below).
    for (int i = tid; i < kTcRows * D / 16; i += S::kThreads) {
      const int row = i / (D / 16), kk = i % (D / 16);
      uint4 lo = make_uint4(0u, 0u, 0u, 0u), hi = lo;
      if (row < n_heads) {
        lo = reinterpret_cast<const uint4*>(q + size_t(row) * D + kk * 16)[0];
        hi = reinterpret_cast<const uint4*>(q + size_t(row) * D + kk * 16)[1];
      }
      if constexpr (!std::is_same_v<T, M>) {  // bf16 queries: their pairs as fp16 pairs (M)
        const auto widen = [](uint32_t x) {
          const float2 f = Pair<T>::to_float2(x);
          return Pair<M>::from_float2(f.x, f.y);
        };
        lo = make_uint4(widen(lo.x), widen(lo.y), widen(lo.z), widen(lo.w));
        hi = make_uint4(widen(hi.x), widen(hi.y), widen(hi.z), widen(hi.w));
      }
      *reinterpret_cast<uint4*>(q_smem + tc_swz<D>(row, 2 * kk)) = make_uint4(lo.x, lo.z, hi.x, hi.z);
      *reinterpret_cast<uint4*>(q_smem + tc_swz<D>(row, 2 * kk + 1)) = make_uint4(lo.y, lo.w, hi.y, hi.w);
    }
  }
  // An fp8 cache's K scale joins the logit scale (q.(s_k k) = s_k q.k, s_k one number per block).
  float qk_scale = p.scale_log2;
  if constexpr (kFp8) qk_scale *= sc.k[kv_head * sc.stride];

  // This lane's two rows: their ALiBi slopes in the base-2 domain (0 without ALiBi or for padding).
  float slope_l2[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = g + 8 * r;
    slope_l2[r] = p.alibi_slopes != nullptr && row < n_heads ? p.alibi_slopes[q_head0 + row] * 1.4426950408889634f
                                                             : 0.f;
  }

  float o[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) o[dt][e] = 0.f;
  }
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
  uint32_t q_frag[S::kQInRegs ? D / 16 : 1][4];
  auto q_a = [&](int kk, uint32_t (&a)[4]) {  // Q's A fragment of k-step kk
    if constexpr (S::kQInRegs) {
#pragma unroll
      for (int e = 0; e < 4; ++e) a[e] = q_frag[kk][e];
    } else {
      ldmatrix_x4(a, q_smem + tc_swz<D>(lane % 16, kk * 2 + lane / 16));
    }
  };

  for (int tile = 0; tile < n_tiles; ++tile) {
    cp_async_wait<S::kStages - 2>();  // this thread's copies of `tile` (and Q) have landed ...
    __syncthreads();                  // ... and everyone's; the stage refilled next was read last round
    {
      const int next = tile + S::kStages - 1;
      if (next < n_tiles) load_tile(next, next % S::kStages);
      cp_async_commit();
    }
    if constexpr (S::kQInRegs) {
      if (tile == 0) {
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) ldmatrix_x4(q_frag[kk], q_smem + tc_swz<D>(lane % 16, kk * 2 + lane / 16));
      }
    }
    const int stage = tile % S::kStages;
    const KV* ks = k_smem + stage * S::kStageElems;
    const KV* vs = v_smem + stage * S::kStageElems;
    const int w0 = warp * S::kTokensPerWarp;  // this warp's first row of the tile
    const int tok0 = begin + tile * S::kTile + w0;

    // S = Q K^T: 16 heads x this warp's 16 tokens, two n8 tiles.
    float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
    if constexpr (kFp8) {
#pragma unroll
      for (int kp = 0; kp < D / 32; ++kp) {
        // a 16-byte row is a whole k-step: matrices tokens +0..7 | k-step 2kp, +8..15 | 2kp, +0..7 |
        // 2kp+1, +8..15 | 2kp+1. Lane (g, t) gets dims 4t..4t+3 of token g: B for k 2t, 2t+1 (dims
        // 4t, 4t+1) and 2t+8, 2t+9 (dims 4t+2, 4t+3), the dims Q's A fragment holds there.
        uint32_t b[4];
        ldmatrix_x4(b, ks + tc_swz<D, 1>(w0 + lane % 8 + ((lane / 8) % 2) * 8, kp * 2 + lane / 16));
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          uint32_t a[4];
          q_a(kp * 2 + h, a);
          uint32_t k0[2], k1[2];
          fp8x4_to_pairs<M>(b[2 * h], k0[0], k0[1]);
          fp8x4_to_pairs<M>(b[2 * h + 1], k1[0], k1[1]);
          mma_16816<M>(s[0], a, k0[0], k0[1]);
          mma_16816<M>(s[1], a, k1[0], k1[1]);
        }
      }
    } else {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t a[4];
        q_a(kk, a);
        // matrices: tokens +0..7 | d lo, tokens +0..7 | d hi, tokens +8..15 | d lo, tokens +8..15 | d hi
        uint32_t b[4];
        ldmatrix_x4(b, ks + tc_swz<D>(w0 + lane % 8 + (lane / 16) * 8, kk * 2 + (lane / 8) % 2));
        mma_16816<T>(s[0], a, b[0], b[1]);
        mma_16816<T>(s[1], a, b[2], b[3]);
      }
    }

    // Base-2 logits, soft-cap, ALiBi, and tokens past the end masked; then the online softmax of
    // each of this lane's two rows over its quad (the 4 lanes holding a row's 16 scores).
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int token = tok0 + nt * 8 + 2 * t + (e & 1);
        float x = s[nt][e] * qk_scale;
        if (p.cap_in != 0.f) x = p.cap_out * fast_tanh(x * p.cap_in);
        x = fmaf(-slope_l2[e >> 1], float(seq_len - 1 - token), x);  // ALiBi (slope 0 when off)
        s[nt][e] = token < end ? x : -INFINITY;
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = fmaxf(fmaxf(s[0][2 * r], s[0][2 * r + 1]), fmaxf(s[1][2 * r], s[1][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      // The max moves only when the tile's exceeds it by more than kStaleMaxSlack: up to that the weights
      // are taken against the kept max (each at most 2^slack; the final division by the sum makes the
      // result the same), and a warp none of whose rows moved skips the output's rescale.
      // -inf + slack = -inf: the first tile with a visible token always moves it.
      const bool moves = mx > row_max[r] + kStaleMaxSlack;
      float alpha = 1.f;
      if (moves) {
        alpha = online_softmax_rescale(row_max[r], 1.f, online_softmax_shift(mx, 1.f));
        row_max[r] = mx;
      }
      const float shift = online_softmax_shift(row_max[r], 1.f);  // base-2 logits: scale 1
      float sum = 0.f;
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
        for (int e = 2 * r; e < 2 * r + 2; ++e) {
          s[nt][e] = online_softmax_weight(s[nt][e], 1.f, shift);
          sum += s[nt][e];
        }
      }
      row_sum[r] = row_sum[r] * alpha + sum;  // this lane's part; summed over the quad at the end
      if (__any_sync(0xffffffffu, moves)) {  // warp-uniform: alpha is 1 in the rows that did not move
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) {
          o[dt][2 * r] *= alpha;
          o[dt][2 * r + 1] *= alpha;
        }
      }
    }

    // O += P V: P re-packed from the S accumulators as the A operand (16 tokens = one k-step).
    uint32_t pa[4];
    pa[0] = Pair<M>::from_float2(s[0][0], s[0][1]);
    pa[1] = Pair<M>::from_float2(s[0][2], s[0][3]);
    pa[2] = Pair<M>::from_float2(s[1][0], s[1][1]);
    pa[3] = Pair<M>::from_float2(s[1][2], s[1][3]);
    if constexpr (kFp8) {
#pragma unroll
      for (int dq = 0; dq < D / 32; ++dq) {
        // matrices as K's, transposed: lane (g, t) gets tokens 2t, 2t+1 (b[1], b[3]: +8) at dims 2g,
        // 2g+1 of 16-dim chunk 2dq (b[0], b[1]) and 2dq+1 (b[2], b[3]). So output tile 2c + j holds
        // dims 16c + 2n + j of chunk c (n its column); the merge below puts them in place.
        uint32_t b[4];
        ldmatrix_x4_trans(b, vs + tc_swz<D, 1>(w0 + lane % 8 + ((lane / 8) % 2) * 8, 2 * dq + lane / 16));
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          mma_16816<M>(o[4 * dq + 2 * h], pa, fp8x2_to_pair<M>(b[2 * h], 0x2404),
                       fp8x2_to_pair<M>(b[2 * h + 1], 0x2404));
          mma_16816<M>(o[4 * dq + 2 * h + 1], pa, fp8x2_to_pair<M>(b[2 * h], 0x3414),
                       fp8x2_to_pair<M>(b[2 * h + 1], 0x3414));
        }
      }
    } else {
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        // matrices: tokens +0..7 | d lo, tokens +8..15 | d lo, tokens +0..7 | d hi, tokens +8..15 | d hi
        uint32_t b[4];
        ldmatrix_x4_trans(b, vs + tc_swz<D>(w0 + lane % 8 + ((lane / 8) % 2) * 8, dp * 2 + lane / 16));
        mma_16816<T>(o[2 * dp], pa, b[0], b[1]);
        mma_16816<T>(o[2 * dp + 1], pa, b[2], b[3]);
      }
    }
  }

  // Merge the four warps' states: M = max of their maxima, each warp's sum and output scaled by
  // 2^(m_w - M) (0 for a warp that saw no token: m_w = -inf).
  cp_async_wait<0>();
  __syncthreads();
  float* red_o = reinterpret_cast<float*>(smem_raw);  // [warp][16][D], overlays the K/V stages (and Q)
  float* red_m = red_o + S::kWarps * kTcRows * D;     // [warp][16]
  float* red_l = red_m + S::kWarps * kTcRows;         // [warp][16]
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = g + 8 * r;
    float l = row_sum[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (t == 0) {
      red_m[warp * kTcRows + row] = row_max[r];
      red_l[warp * kTcRows + row] = l;
    }
    if constexpr (kFp8) {  // tiles 2c, 2c + 1 hold dims 16c + 4t + (0, 2) and (1, 3)
      float* dst = red_o + (warp * kTcRows + row) * D + 4 * t;
#pragma unroll
      for (int c = 0; c < D / 16; ++c) {
        *reinterpret_cast<float4*>(dst + 16 * c) =
            make_float4(o[2 * c][2 * r], o[2 * c + 1][2 * r], o[2 * c][2 * r + 1], o[2 * c + 1][2 * r + 1]);
      }
    } else {
      float* dst = red_o + (warp * kTcRows + row) * D + 2 * t;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        *reinterpret_cast<float2*>(dst + dt * 8) = make_float2(o[dt][2 * r], o[dt][2 * r + 1]);
      }
    }
  }
  __syncthreads();

  // An fp8 cache's V scale multiplies the merged output (sum_j p_j s_v v_j = s_v sum_j p_j v_j).
  float v_scale = 1.f;
  if constexpr (kFp8) v_scale = sc.v[kv_head * sc.stride];
  for (int i = tid; i < n_heads * D; i += S::kThreads) {
    const int row = i / D, d = i % D;
    float m = -INFINITY;
#pragma unroll
    for (int w = 0; w < S::kWarps; ++w) m = fmaxf(m, red_m[w * kTcRows + row]);
    const float shift = online_softmax_shift(m, 1.f);
    float acc = 0.f, l = 0.f;
#pragma unroll
    for (int w = 0; w < S::kWarps; ++w) {
      const float wgt = online_softmax_rescale(red_m[w * kTcRows + row], 1.f, shift);
      acc += wgt * red_o[(w * kTcRows + row) * D + d];
      l += wgt * red_l[w * kTcRows + row];
    }
    if constexpr (kFp8) acc *= v_scale;
    const size_t out_row = size_t(seq) * p.num_q_heads + q_head0 + row;
    if constexpr (!kSplit) {
      static_cast<T*>(p.out)[out_row * D + d] = from_float<T>(acc / l);
    } else {
      const size_t slot = out_row * p.max_partitions + blockIdx.z;
      p.part_acc[slot * D + d] = acc;
      if (d == 0) {
        p.part_ml[slot * 2] = m;
        p.part_ml[slot * 2 + 1] = l;
      }
    }
  }
}

template <typename T, int D, int GT>
int launch(const PagedParams& p, int batch, cudaStream_t stream) {
  constexpr int smem = decode_smem_bytes<D, GT>();
  const dim3 block(DecodeShape<D>::kThreads);
  if (p.partition_tokens == 0) {
    auto kernel = paged_decode_kernel<T, D, GT, false>;
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    kernel<<<dim3(p.num_kv_heads * p.head_tiles, batch), block, smem, stream>>>(p);
    return check_launch("paged_decode_kernel (v1)");
  }
  auto kernel = paged_decode_kernel<T, D, GT, true>;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  kernel<<<dim3(p.num_kv_heads * p.head_tiles, batch, p.max_partitions), block, smem, stream>>>(p);
  if (const int rc = check_launch("paged_decode_kernel (v2)")) return rc;
  paged_reduce_kernel<T, D><<<dim3(p.num_q_heads, batch), 128, 0, stream>>>(p);
  return check_launch("paged_reduce_kernel (v2)");
}

template <typename T, typename KV, int D>
int launch_tc(const PagedParams& p, const KvScales& sc, int batch, cudaStream_t stream) {
  constexpr int smem = TcShape<D, sizeof(KV)>::kSmemBytes;
  const dim3 block(TcShape<D>::kThreads);
  const dim3 grid(p.num_kv_heads * p.head_tiles, batch, p.partition_tokens == 0 ? 1 : p.max_partitions);
  auto kernel = p.partition_tokens == 0 ? paged_decode_tc_kernel<T, KV, D, false>
                                        : paged_decode_tc_kernel<T, KV, D, true>;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  kernel<<<grid, block, smem, stream>>>(p, sc);
  if (const int rc = check_launch("paged_decode_tc_kernel")) return rc;
  if (p.partition_tokens == 0) return 0;
  paged_reduce_kernel<T, D><<<dim3(p.num_q_heads, batch), 128, 0, stream>>>(p);
  return check_launch("paged_reduce_kernel (tc v2)");
}

// Query heads a block serves: the group rounded up to a power of two, at most 8 (more would not fit
// the registers; larger groups take several blocks per KV head, each re-reading the K/V).
int heads_per_block(int group) { return group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : 8; }

template <typename T, int D>
int dispatch_heads(const PagedParams& p, int batch, cudaStream_t stream) {
  switch (heads_per_block(p.group)) {
    case 1: return launch<T, D, 1>(p, batch, stream);
    case 2: return launch<T, D, 2>(p, batch, stream);
    case 4: return launch<T, D, 4>(p, batch, stream);
    default: return launch<T, D, 8>(p, batch, stream);
  }
}

template <typename T>
int dispatch_dim(const PagedParams& p, int batch, int head_dim, cudaStream_t stream) {
  switch (head_dim) {
    case 64: return dispatch_heads<T, 64>(p, batch, stream);
    case 128: return dispatch_heads<T, 128>(p, batch, stream);
    default: return dispatch_heads<T, 256>(p, batch, stream);
  }
}

template <typename T, typename KV>
int dispatch_tc(const PagedParams& p, const KvScales& sc, int batch, int head_dim, cudaStream_t stream) {
  switch (head_dim) {
    case 64: return launch_tc<T, KV, 64>(p, sc, batch, stream);
    case 128: return launch_tc<T, KV, 128>(p, sc, batch, stream);
    default: return launch_tc<T, KV, 256>(p, sc, batch, stream);
  }
}

template <typename T, typename KV, int D>
int occupancy_tc() {
  constexpr int smem = TcShape<D, sizeof(KV)>::kSmemBytes;
  auto kernel = paged_decode_tc_kernel<T, KV, D, false>;
  int blocks = 0;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess) return 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, TcShape<D>::kThreads, smem) != cudaSuccess) {
    return 0;
  }
  return blocks;
}

template <typename T, typename KV>
int occupancy_tc_dim(int head_dim) {
  switch (head_dim) {
    case 64: return occupancy_tc<T, KV, 64>();
    case 128: return occupancy_tc<T, KV, 128>();
    case 256: return occupancy_tc<T, KV, 256>();
    default: return 0;
  }
}

template <typename T, int D, int GT>
int occupancy_of() {
  constexpr int smem = decode_smem_bytes<D, GT>();
  auto kernel = paged_decode_kernel<T, D, GT, false>;
  int blocks = 0;
  // The calculator answers 0 for more than 48 KiB unless the kernel's limit was raised first.
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess) return 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, DecodeShape<D>::kThreads, smem) !=
      cudaSuccess) {
    return 0;
  }
  return blocks;
}

template <typename T, int D>
int occupancy(int gt) {
  switch (gt) {
    case 1: return occupancy_of<T, D, 1>();
    case 2: return occupancy_of<T, D, 2>();
    case 4: return occupancy_of<T, D, 4>();
    default: return occupancy_of<T, D, 8>();
  }
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

// Both entry points: the arguments checked, the parameters built, the kernel of `impl` launched.
enum class Impl { kSimt, kTc };

int paged_decode(Impl impl, void* out, const void* q, const void* k_cache, const void* v_cache,
                 const int* block_tables, const int* kv_lens, int batch, int num_q_heads, int num_kv_heads,
                 int head_dim, int block_size, int table_stride, int dtype, float softmax_scale, int window,
                 float softcap, const float* alibi_slopes, int partition_tokens, float* part_acc,
                 float* part_ml, int max_partitions, int kv_dtype, const float* k_scale, const float* v_scale,
                 int kv_scales, void* stream) {
  if (head_dim != 64 && head_dim != 128 && head_dim != 256) {
    return set_error(ATTNBENCH_EINVAL, "head_dim %d: allowed 64, 128, 256", head_dim);
  }
  if (dtype != ATTNBENCH_FP16 && dtype != ATTNBENCH_BF16) {
    return set_error(ATTNBENCH_EINVAL, "dtype code %d: allowed 0 (fp16), 1 (bf16)", dtype);
  }
  if (block_size < 1 || block_size > 1024 || (block_size & (block_size - 1)) != 0) {
    return set_error(ATTNBENCH_EINVAL, "block_size %d: must be a power of two in 1..1024", block_size);
  }
  if (batch < 1 || batch > 65535 || num_kv_heads < 1 || num_q_heads % num_kv_heads != 0) {
    return set_error(ATTNBENCH_EINVAL, "batch %d (1..65535) / heads %d:%d (q a multiple of kv)", batch,
                     num_q_heads, num_kv_heads);
  }
  if (!aligned16(out) || !aligned16(q) || !aligned16(k_cache) || !aligned16(v_cache)) {
    return set_error(ATTNBENCH_EINVAL, "out, q, k_cache and v_cache must be 16-byte aligned");
  }
  if (!(softcap >= 0.f) || softcap == INFINITY) {
    return set_error(ATTNBENCH_EINVAL, "softcap %g: 0 (none) or a positive finite number", softcap);
  }
  if (partition_tokens < 0 || partition_tokens % 64 != 0) {
    return set_error(ATTNBENCH_EINVAL, "partition_tokens %d: 0 (v1) or a positive multiple of 64",
                     partition_tokens);
  }
  if (partition_tokens > 0 &&
      (part_acc == nullptr || part_ml == nullptr || max_partitions < 1 || max_partitions > 65535)) {
    return set_error(ATTNBENCH_EINVAL, "v2 needs part_acc, part_ml and 1 <= max_partitions <= 65535");
  }
  if (kv_dtype != ATTNBENCH_KV_AUTO && kv_dtype != ATTNBENCH_KV_FP8_E4M3) {
    return set_error(ATTNBENCH_EINVAL, "kv_dtype code %d: allowed 0 (auto: dtype), 1 (fp8 e4m3)", kv_dtype);
  }
  const bool fp8 = kv_dtype == ATTNBENCH_KV_FP8_E4M3;
  if (fp8 && impl != Impl::kTc) {
    return set_error(ATTNBENCH_EINVAL, "kv_dtype fp8 e4m3: attnbench_paged_decode_tc only (this kernel reads "
                                       "fp16/bf16 K/V)");
  }
  if (fp8 && (k_scale == nullptr || v_scale == nullptr || (kv_scales != 1 && kv_scales != num_kv_heads))) {
    return set_error(ATTNBENCH_EINVAL, "fp8 KV needs k_scale, v_scale and kv_scales 1 (per tensor) or %d (per "
                                       "KV head), got %d", num_kv_heads, kv_scales);
  }
  PagedParams p{};
  p.out = out;
  p.q = q;
  p.k_cache = k_cache;
  p.v_cache = v_cache;
  p.block_tables = block_tables;
  p.kv_lens = kv_lens;
  p.part_acc = part_acc;
  p.part_ml = part_ml;
  p.num_q_heads = num_q_heads;
  p.num_kv_heads = num_kv_heads;
  p.group = num_q_heads / num_kv_heads;
  const int gt = impl == Impl::kTc ? kTcRows : heads_per_block(p.group);
  p.head_tiles = (p.group + gt - 1) / gt;
  p.block_shift = __builtin_ctz(static_cast<unsigned>(block_size));
  p.table_stride = table_stride;
  p.partition_tokens = partition_tokens;
  p.max_partitions = partition_tokens > 0 ? max_partitions : 0;
  p.scale_log2 = softmax_scale * 1.4426950408889634f;
  p.window = window < 0 ? -1 : window;
  p.cap_in = softcap > 0.f ? 1.f / (softcap * 1.4426950408889634f) : 0.f;
  p.cap_out = softcap > 0.f ? softcap * 1.4426950408889634f : 0.f;
  p.alibi_slopes = alibi_slopes;
  const KvScales sc{k_scale, v_scale, fp8 && kv_scales > 1 ? 1 : 0};
  auto s = static_cast<cudaStream_t>(stream);
  const bool half = dtype == ATTNBENCH_FP16;
  if (impl == Impl::kTc && fp8) {
    return half ? dispatch_tc<__half, __nv_fp8_e4m3>(p, sc, batch, head_dim, s)
                : dispatch_tc<__nv_bfloat16, __nv_fp8_e4m3>(p, sc, batch, head_dim, s);
  }
  if (impl == Impl::kTc) {
    return half ? dispatch_tc<__half, __half>(p, sc, batch, head_dim, s)
                : dispatch_tc<__nv_bfloat16, __nv_bfloat16>(p, sc, batch, head_dim, s);
  }
  return half ? dispatch_dim<__half>(p, batch, head_dim, s) : dispatch_dim<__nv_bfloat16>(p, batch, head_dim, s);
}

}  // namespace
}  // namespace attnbench

extern "C" int attnbench_paged_decode(void* out, const void* q, const void* k_cache, const void* v_cache,
                                      const int* block_tables, const int* kv_lens, int batch, int num_q_heads,
                                      int num_kv_heads, int head_dim, int block_size, int table_stride,
                                      int dtype, float softmax_scale, int window, float softcap,
                                      const float* alibi_slopes, int partition_tokens, float* part_acc,
                                      float* part_ml, int max_partitions, int kv_dtype, const float* k_scale,
                                      const float* v_scale, int kv_scales, void* stream) {
  return attnbench::paged_decode(attnbench::Impl::kSimt, out, q, k_cache, v_cache, block_tables, kv_lens, batch,
                                 num_q_heads, num_kv_heads, head_dim, block_size, table_stride, dtype,
                                 softmax_scale, window, softcap, alibi_slopes, partition_tokens, part_acc,
                                 part_ml, max_partitions, kv_dtype, k_scale, v_scale, kv_scales, stream);
}

extern "C" int attnbench_paged_decode_tc(void* out, const void* q, const void* k_cache, const void* v_cache,
                                         const int* block_tables, const int* kv_lens, int batch,
                                         int num_q_heads, int num_kv_heads, int head_dim, int block_size,
                                         int table_stride, int dtype, float softmax_scale, int window,
                                         float softcap, const float* alibi_slopes, int partition_tokens,
                                         float* part_acc, float* part_ml, int max_partitions, int kv_dtype,
                                         const float* k_scale, const float* v_scale, int kv_scales,
                                         void* stream) {
  return attnbench::paged_decode(attnbench::Impl::kTc, out, q, k_cache, v_cache, block_tables, kv_lens, batch,
                                 num_q_heads, num_kv_heads, head_dim, block_size, table_stride, dtype,
                                 softmax_scale, window, softcap, alibi_slopes, partition_tokens, part_acc,
                                 part_ml, max_partitions, kv_dtype, k_scale, v_scale, kv_scales, stream);
}

extern "C" int attnbench_paged_decode_blocks_per_sm(int head_dim, int num_q_heads, int num_kv_heads,
                                                    int dtype) {
  using namespace attnbench;
  if (num_kv_heads < 1 || num_q_heads % num_kv_heads != 0) return 0;
  const int gt = heads_per_block(num_q_heads / num_kv_heads);
  const bool half = dtype == ATTNBENCH_FP16;
  switch (head_dim) {
    case 64: return half ? occupancy<__half, 64>(gt) : occupancy<__nv_bfloat16, 64>(gt);
    case 128: return half ? occupancy<__half, 128>(gt) : occupancy<__nv_bfloat16, 128>(gt);
    case 256: return half ? occupancy<__half, 256>(gt) : occupancy<__nv_bfloat16, 256>(gt);
    default: return 0;
  }
}

extern "C" int attnbench_paged_decode_tc_blocks_per_sm(int head_dim, int dtype, int kv_dtype) {
  using namespace attnbench;
  const bool half = dtype == ATTNBENCH_FP16;
  if (kv_dtype == ATTNBENCH_KV_FP8_E4M3) {
    return half ? occupancy_tc_dim<__half, __nv_fp8_e4m3>(head_dim)
                : occupancy_tc_dim<__nv_bfloat16, __nv_fp8_e4m3>(head_dim);
  }
  return half ? occupancy_tc_dim<__half, __half>(head_dim)
              : occupancy_tc_dim<__nv_bfloat16, __nv_bfloat16>(head_dim);
}
