// Flash-attention forward (prefill) on tensor cores: mma.sync m16n8k16, ldmatrix, cp.async double
// buffering, online softmax in float32, causal (bottom-right aligned) or full, packed varlen sequences
// (cu_seqlens), GQA, head dims 64 and 128, fp16 and bf16; optional sliding window and logit soft-cap.
//
// Patterns are run-time arguments (one compiled kernel serves every window size and cap): a window
// moves the start of the KV loop to the first tile the block's first row can reach, so tiles wholly
// before every row's window are never loaded, and masks the window edge like the causal diagonal;
// the soft-cap is applied to the raw scores (one tanh.approx each) before masking, then ALiBi's
// -slope * distance (one FMA each, only when slopes are given).
//
// A thread block owns BM query rows of one (sequence, query head); each warp owns 16 * kMT of those
// rows. Per KV tile of BN keys:
//   S = Q K^T        A = Q fragments (kept in registers when they fit, else ldmatrix from shared),
//                    B = K rows via ldmatrix (K row-major [key][d] is exactly the col-major B operand);
//   online softmax   per row: running max and sum in float32, base-2 exponentials, scale folded in;
//   O += P V         A = P re-packed from the S accumulators (no shared-memory round trip),
//                    B = V via ldmatrix.trans.
// While tile j is computed, tile j+1 of K and V is already being copied (cp.async, second stage).
// Shared tiles are stored with 16-byte chunks XOR-swizzled by (row % 8), so the 8 row addresses of
// each ldmatrix hit 8 different bank groups. The output is staged through shared memory so that the
// global stores are 16 bytes wide and coalesced.
//
// Tile configurations (config argument; 0 is the default, the others exist for tuning runs):
//   0: BM 128, BN 64, 8 warps (16 rows each, Q in registers)
//   1: BM 128, BN 64, 4 warps (32 rows each: each K/V fragment feeds two MMAs)
//   2: BM  64, BN 64, 4 warps (16 rows each; smaller blocks, more of them per SM)
//   3: BM 128, BN 32, 4 warps (32 rows each, half-size S tile)
#include <cuda_runtime.h>

// One file, ~450 lines, on purpose: the kernel template, its configurations and the dispatch that picks
// one share the tile constants (FlashShape); the mutation tests plant faults by text in this file. The
// only part that would come apart cleanly, the ~40 lines of tile helpers below (swz, load_rows,
// for_each_score), is this kernel's own tile geometry, except the swizzle, which is paged_attention.cu's
// tc_swz again: the split worth making is that one function into common.cuh, a change to both kernels.

#include <cstdint>

#include "api.h"
#include "common.cuh"
#include "online_softmax.cuh"

namespace attnbench {
namespace {

struct FlashParams {
  void* out;
  const void* q;
  const void* k;
  const void* v;
  const int* cu_q;
  const int* cu_k;
  int num_q_heads;
  int num_kv_heads;
  int group;          // query heads per KV head
  float scale_log2;   // softmax scale * log2(e)
  float scale;        // softmax scale
  int window;         // sliding-window left context in tokens; < 0 = none
  // Soft-cap folded around the raw score s = q.k: s -> cap_out * tanh(s * cap_in) with cap_in =
  // scale / cap and cap_out = cap / scale, so that the scale_log2 step after it still applies.
  float cap_in;       // 0 = no soft-cap
  float cap_out;
  const float* alibi_slopes;  // (num_q_heads,) or null: score -= slope_h * |position - key|
};

template <int D, int BM, int BN, int WARPS>
struct FlashShape {
  static constexpr int kThreads = WARPS * 32;
  static constexpr int kMT = BM / (16 * WARPS);  // 16-row MMA tiles per warp
  static constexpr bool kQInRegs = kMT * D <= 128;
  static constexpr int kSmemBytes = (BM + 4 * BN) * D * 2;  // Q + 2 stages of K and V
  static_assert(kMT >= 1 && kMT * 16 * WARPS == BM, "BM must be 16 * WARPS * kMT");
  static_assert(D % 64 == 0 && BN % 16 == 0, "swizzle needs >= 8 chunks per row");
};

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][D] tile, chunks XOR-swizzled.
template <int D>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) * kVec);
}

// Copy ROWS x D elements (row stride `stride` in global) into a swizzled shared tile; rows at or past
// `valid_rows` are zero-filled without reading global memory.
template <int ROWS, int D, int THREADS, typename T>
__device__ __forceinline__ void load_rows(T* smem, const T* gmem, size_t stride, int valid_rows, int tid) {
  constexpr int kChunks = D / kVec;
  constexpr int kTotal = ROWS * kChunks;
  static_assert(kTotal % THREADS == 0, "copies must split evenly over the threads");
#pragma unroll
  for (int i = 0; i < kTotal / THREADS; ++i) {
    const int idx = tid + i * THREADS;
    const int row = idx / kChunks, c = idx % kChunks;
    const bool valid = row < valid_rows;
    const T* src = valid ? gmem + row * stride + c * kVec : gmem;
    cp_async_16(smem + swz<D>(row, c), src, valid);
  }
}

// Calls f(score, row, key) on each S accumulator of this lane, with its query row and key index: in the
// m16n8 accumulator layout, element e of MMA tile (mt, nt) is row row0 + mt * 16 + g + 8 * (e >= 2)
// and key key0 + nt * 8 + 2 * t + (e & 1), for lane = 4 * g + t.
template <int kMT, int BN, typename F>
__device__ __forceinline__ void for_each_score(float (&s)[kMT][BN / 8][4], int row0, int key0, int g, int t,
                                               F&& f) {
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int nt = 0; nt < BN / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        f(s[mt][nt][e], row0 + mt * 16 + g + (e >= 2 ? 8 : 0), key0 + nt * 8 + 2 * t + (e & 1));
      }
    }
  }
}

template <typename T, int D, int BM, int BN, int WARPS, bool CAUSAL>
__global__ void __launch_bounds__(WARPS * 32) flash_fwd_kernel(const FlashParams p) {
  using S = FlashShape<D, BM, BN, WARPS>;
  constexpr int kMT = S::kMT;
  constexpr int kThreads = S::kThreads;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* q_s = reinterpret_cast<T*>(smem_raw);  // [BM][D]
  T* k_s = q_s + BM * D;                    // [2][BN][D]
  T* v_s = k_s + 2 * BN * D;                // [2][BN][D]

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int seq = blockIdx.z, head = blockIdx.y;
  // Causal: the last row blocks have the most keys; start them first so they do not finish last.
  const int m_block = CAUSAL ? int(gridDim.x) - 1 - int(blockIdx.x) : int(blockIdx.x);
  const int q_begin = p.cu_q[seq], q_len = p.cu_q[seq + 1] - q_begin;
  const int m0 = m_block * BM;
  if (m0 >= q_len) return;
  const int k_begin = p.cu_k[seq], kv_len = p.cu_k[seq + 1] - k_begin;
  const int kv_head = head / p.group;
  const int diag = kv_len - q_len;  // causal: query row i sees keys 0 .. i + diag
  const int n_end = CAUSAL ? min(kv_len, m0 + BM + diag) : kv_len;
  // Window: row i sees keys >= i + diag - window; the block's first row reaches back the furthest.
  const bool windowed = p.window >= 0;
  const int n_begin = windowed ? max(0, m0 + diag - p.window) : 0;
  const int tile0 = n_begin / BN;  // first tile any row of the block can see
  const int n_tiles = (n_end + BN - 1) / BN - tile0;

  const size_t q_stride = size_t(p.num_q_heads) * D;
  const size_t kv_stride = size_t(p.num_kv_heads) * D;
  const T* q_g = static_cast<const T*>(p.q) + (size_t(q_begin + m0) * p.num_q_heads + head) * D;
  // K/V pointers start at the first tile the window reaches; key indices below are absolute.
  const size_t kv_offset = (size_t(k_begin) + size_t(tile0) * BN) * p.num_kv_heads + kv_head;
  const T* k_g = static_cast<const T*>(p.k) + kv_offset * D;
  const T* v_g = static_cast<const T*>(p.v) + kv_offset * D;
  const int kv_left = kv_len - tile0 * BN;  // keys from the first loaded tile to the sequence's end

  load_rows<BM, D, kThreads>(q_s, q_g, q_stride, q_len - m0, tid);
  load_rows<BN, D, kThreads>(k_s, k_g, kv_stride, kv_left, tid);
  load_rows<BN, D, kThreads>(v_s, v_g, kv_stride, kv_left, tid);
  cp_async_commit();

  const int g = lane / 4, t = lane % 4;  // MMA fragment coordinates
  // ALiBi slope of this block's head over the softmax scale (scores here are raw q.k); 0 = none.
  const float alibi_raw = p.alibi_slopes != nullptr ? p.alibi_slopes[head] / p.scale : 0.f;
  const int warp_row0 = warp * 16 * kMT;
  const float sl2 = p.scale_log2;

  float o[kMT][D / 8][4];
  float row_max[kMT][2], row_sum[kMT][2];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][dt][e] = 0.f;
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      row_max[mt][r] = -INFINITY;
      row_sum[mt][r] = 0.f;
    }
  }
  uint32_t q_frag[S::kQInRegs ? kMT : 1][S::kQInRegs ? D / 16 : 1][4];

  for (int j = 0; j < n_tiles; ++j) {
    const int stage = j & 1;
    if (j + 1 < n_tiles) {
      const size_t next = size_t(j + 1) * BN * kv_stride;
      load_rows<BN, D, kThreads>(k_s + (stage ^ 1) * BN * D, k_g + next, kv_stride, kv_left - (j + 1) * BN, tid);
      load_rows<BN, D, kThreads>(v_s + (stage ^ 1) * BN * D, v_g + next, kv_stride, kv_left - (j + 1) * BN, tid);
      cp_async_commit();
      cp_async_wait<1>();  // tile j (and Q) landed; tile j+1 may still be in flight
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const T* ks = k_s + stage * BN * D;
    const T* vs = v_s + stage * BN * D;

    if constexpr (S::kQInRegs) {
      if (j == 0) {
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
          for (int kk = 0; kk < D / 16; ++kk) {
            ldmatrix_x4(q_frag[mt][kk], q_s + swz<D>(warp_row0 + mt * 16 + lane % 16, kk * 2 + lane / 16));
          }
        }
      }
    }

    // S = Q K^T for this warp's rows and the tile's BN keys.
    float s[kMT][BN / 8][4];
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
      for (int nt = 0; nt < BN / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.f;
      }
    }
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        if constexpr (S::kQInRegs) {
#pragma unroll
          for (int e = 0; e < 4; ++e) a[mt][e] = q_frag[mt][kk][e];
        } else {
          ldmatrix_x4(a[mt], q_s + swz<D>(warp_row0 + mt * 16 + lane % 16, kk * 2 + lane / 16));
        }
      }
#pragma unroll
      for (int np = 0; np < BN / 16; ++np) {
        // matrices: keys +0..7 | d lo, keys +0..7 | d hi, keys +8..15 | d lo, keys +8..15 | d hi
        uint32_t b[4];
        ldmatrix_x4(b, ks + swz<D>(np * 16 + lane % 8 + (lane / 16) * 8, kk * 2 + (lane / 8) % 2));
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma_16816<T>(s[mt][2 * np], a[mt], b[0], b[1]);
          mma_16816<T>(s[mt][2 * np + 1], a[mt], b[2], b[3]);
        }
      }
    }

    // Soft-cap the raw scores (before masking: masked scores stay -inf).
    if (p.cap_in != 0.f) {
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
        for (int nt = 0; nt < BN / 8; ++nt) {
#pragma unroll
          for (int e = 0; e < 4; ++e) s[mt][nt][e] = p.cap_out * fast_tanh(s[mt][nt][e] * p.cap_in);
        }
      }
    }

    // ALiBi: - slope * |row position - key|, in raw-score units (the scale is applied after).
    const int key0 = (tile0 + j) * BN;
    if (alibi_raw != 0.f) {
      for_each_score<kMT, BN>(s, m0 + warp_row0, key0, g, t, [&](float& score, int row, int key) {
        score = fmaf(-alibi_raw, fabsf(float(row + diag - key)), score);
      });
    }

    // Mask keys past the sequence, if causal past each row's diagonal, and before each row's window
    // (a tile needs the window mask when its first key is before the warp's last row's window start).
    const int warp_last_row = m0 + warp_row0 + 16 * kMT - 1;
    if (key0 + BN > kv_len || (CAUSAL && key0 + BN - 1 > m0 + warp_row0 + diag) ||
        (windowed && key0 < warp_last_row + diag - p.window)) {
      for_each_score<kMT, BN>(s, m0 + warp_row0, key0, g, t, [&](float& score, int row, int key) {
        const bool visible = key < kv_len && (!CAUSAL || key <= row + diag) &&
                             (!windowed || key >= row + diag - p.window);
        if (!visible) score = -INFINITY;
      });
    }

    // Online softmax: each row is spread over the 4 lanes of a quad (t = 0..3).
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < BN / 8; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * r], s[mt][nt][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(row_max[mt][r], mx);
        const float m_scaled = online_softmax_shift(m_new, sl2);  // 0 for a row with nothing visible yet
        const float alpha = online_softmax_rescale(row_max[mt][r], sl2, m_scaled);
        row_max[mt][r] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < BN / 8; ++nt) {
#pragma unroll
          for (int e = 2 * r; e < 2 * r + 2; ++e) {
            const float pr = online_softmax_weight(s[mt][nt][e], sl2, m_scaled);
            s[mt][nt][e] = pr;
            sum += pr;
          }
        }
        row_sum[mt][r] = row_sum[mt][r] * alpha + sum;  // per-lane partial; quad-summed at the end
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) {
          o[mt][dt][2 * r] *= alpha;
          o[mt][dt][2 * r + 1] *= alpha;
        }
      }
    }

    // O += P V, P re-packed from the S accumulators as A fragments (16 keys per k-step).
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      uint32_t a[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        a[mt][0] = Pair<T>::from_float2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        a[mt][1] = Pair<T>::from_float2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        a[mt][2] = Pair<T>::from_float2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        a[mt][3] = Pair<T>::from_float2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        // matrices: keys +0..7 | d lo, keys +8..15 | d lo, keys +0..7 | d hi, keys +8..15 | d hi
        uint32_t b[4];
        ldmatrix_x4_trans(b, vs + swz<D>(kk * 16 + lane % 8 + ((lane / 8) % 2) * 8, dp * 2 + lane / 16));
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma_16816<T>(o[mt][2 * dp], a[mt], b[0], b[1]);
          mma_16816<T>(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
        }
      }
    }
    __syncthreads();  // the stage just read is refilled by the next iteration's copies
  }

  // Normalise, stage the tile in shared memory (Q's place), then write 16-byte coalesced rows.
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = row_sum[mt][r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.f ? 1.f / l : 0.f;
      const int row = warp_row0 + mt * 16 + g + 8 * r;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        *reinterpret_cast<uint32_t*>(q_s + swz<D>(row, dt) + 2 * t) =
            Pair<T>::from_float2(o[mt][dt][2 * r] * inv, o[mt][dt][2 * r + 1] * inv);
      }
    }
  }
  __syncthreads();
  T* o_g = static_cast<T*>(p.out) + (size_t(q_begin + m0) * p.num_q_heads + head) * D;
  constexpr int kChunks = D / kVec;
#pragma unroll
  for (int i = 0; i < BM * kChunks / kThreads; ++i) {
    const int idx = tid + i * kThreads;
    const int row = idx / kChunks, c = idx % kChunks;
    if (row < q_len - m0) {
      *reinterpret_cast<uint4*>(o_g + row * q_stride + c * kVec) =
          *reinterpret_cast<const uint4*>(q_s + swz<D>(row, c));
    }
  }
}

template <typename T, int D, int BM, int BN, int WARPS>
int launch(const FlashParams& p, int batch, int max_q_len, bool causal, cudaStream_t stream) {
  using S = FlashShape<D, BM, BN, WARPS>;
  const dim3 grid((max_q_len + BM - 1) / BM, p.num_q_heads, batch);
  auto kernel = causal ? flash_fwd_kernel<T, D, BM, BN, WARPS, true> : flash_fwd_kernel<T, D, BM, BN, WARPS, false>;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, S::kSmemBytes);
  kernel<<<grid, S::kThreads, S::kSmemBytes, stream>>>(p);
  return check_launch("flash_fwd_kernel");
}

constexpr int kNumConfigs = 4;

template <typename T, int D>
int dispatch_config(const FlashParams& p, int batch, int max_q_len, bool causal, int config,
                    cudaStream_t stream) {
  switch (config) {
    case 1: return launch<T, D, 128, 64, 4>(p, batch, max_q_len, causal, stream);
    case 2: return launch<T, D, 64, 64, 4>(p, batch, max_q_len, causal, stream);
    case 3: return launch<T, D, 128, 32, 4>(p, batch, max_q_len, causal, stream);
    default: return launch<T, D, 128, 64, 8>(p, batch, max_q_len, causal, stream);
  }
}

template <typename T>
int dispatch_dim(const FlashParams& p, int batch, int max_q_len, int head_dim, bool causal, int config,
                 cudaStream_t stream) {
  if (head_dim == 64) return dispatch_config<T, 64>(p, batch, max_q_len, causal, config, stream);
  return dispatch_config<T, 128>(p, batch, max_q_len, causal, config, stream);
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

}  // namespace
}  // namespace attnbench

extern "C" int attnbench_flash_num_configs(void) { return attnbench::kNumConfigs; }

extern "C" int attnbench_flash_fwd(void* out, const void* q, const void* k, const void* v,
                                   const int* cu_seqlens_q, const int* cu_seqlens_k, int batch, int max_q_len,
                                   int num_q_heads, int num_kv_heads, int head_dim, int dtype, int causal,
                                   float softmax_scale, int window, float softcap, const float* alibi_slopes,
                                   int config, void* stream) {
  using namespace attnbench;
  if (head_dim != 64 && head_dim != 128) {
    return set_error(ATTNBENCH_EINVAL, "head_dim %d: allowed 64, 128", head_dim);
  }
  if (dtype != ATTNBENCH_FP16 && dtype != ATTNBENCH_BF16) {
    return set_error(ATTNBENCH_EINVAL, "dtype code %d: allowed 0 (fp16), 1 (bf16)", dtype);
  }
  if (batch < 1 || batch > 65535 || num_q_heads < 1 || num_q_heads > 65535 || num_kv_heads < 1 ||
      num_q_heads % num_kv_heads != 0) {
    return set_error(ATTNBENCH_EINVAL, "batch %d (1..65535) / heads %d:%d (q a multiple of kv)", batch,
                     num_q_heads, num_kv_heads);
  }
  if (max_q_len < 1) return set_error(ATTNBENCH_EINVAL, "max_q_len %d: must be >= 1", max_q_len);
  if (config < 0 || config >= kNumConfigs) {
    return set_error(ATTNBENCH_EINVAL, "config %d: allowed 0..%d", config, kNumConfigs - 1);
  }
  if (!aligned16(out) || !aligned16(q) || !aligned16(k) || !aligned16(v)) {
    return set_error(ATTNBENCH_EINVAL, "out, q, k and v must be 16-byte aligned");
  }
  if (!(softcap >= 0.f) || softcap == INFINITY) {
    return set_error(ATTNBENCH_EINVAL, "softcap %g: 0 (none) or a positive finite number", softcap);
  }
  FlashParams p{};
  p.out = out;
  p.q = q;
  p.k = k;
  p.v = v;
  p.cu_q = cu_seqlens_q;
  p.cu_k = cu_seqlens_k;
  p.num_q_heads = num_q_heads;
  p.num_kv_heads = num_kv_heads;
  p.group = num_q_heads / num_kv_heads;
  p.scale_log2 = softmax_scale * 1.4426950408889634f;
  p.window = window < 0 ? -1 : window;
  p.cap_in = softcap > 0.f ? softmax_scale / softcap : 0.f;
  p.cap_out = softcap > 0.f ? softcap / softmax_scale : 0.f;
  p.scale = softmax_scale;
  p.alibi_slopes = alibi_slopes;
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == ATTNBENCH_FP16) return dispatch_dim<__half>(p, batch, max_q_len, head_dim, causal != 0, config, s);
  return dispatch_dim<__nv_bfloat16>(p, batch, max_q_len, head_dim, causal != 0, config, s);
}
