// Paged attention on a CPU: C++ with OpenMP over an NHD block pool (see api.h for the ABI).
//
// One work item is (sequence, query tile, KV head): up to query_tile query rows of one sequence with
// every query head that shares the KV head (GQA), so each K/V block is read (and widened to float32)
// once per item and used by tile x group (row, head) pairs. The item walks the sequence's blocks
// through its block table in order, keeping a running max, sum and float32 output per pair (online
// softmax, one pass: online_softmax.h), and skips blocks no row of the tile may see: past the causal
// diagonal, and before the sliding window (the walk starts at the first block the tile's first row can
// reach, so a window of w tokens reads about w / block_size + 1 blocks whatever the context). Soft-capping and ALiBi are
// applied to each score before the softmax; window, soft-cap and slopes are run-time arguments, so a
// new pattern needs no rebuild. Items are spread over the OpenMP team with dynamic scheduling, since
// sequences differ in length.

#include "api.h"

#include <omp.h>

#include <cmath>
#include <cstdio>
#include <type_traits>

#include "convert.h"
#include "online_softmax.h"

namespace attnbench_cpu {
namespace {

constexpr int kAbiVersion = 2;  // 2: window, softcap, alibi_slopes
constexpr int kMaxHeadDim = 1024;
constexpr int kMaxBlockSize = 4096;
constexpr int kMaxQueryTile = 256;

thread_local char g_last_error[512] = "";

int fail(const char* message) {
  std::snprintf(g_last_error, sizeof g_last_error, "%s", message);
  return ATTNBENCH_CPU_EINVAL;
}

struct Geometry {
  int num_q_heads, num_kv_heads, head_dim, block_size, table_stride, group, query_tile;
  bool causal;
  float scale;
  int window;                // left context in tokens; < 0 = full attention
  float softcap;             // <= 0 = none
  const float* alibi_slopes;  // (num_q_heads,) or null
  int64_t pairs() const { return static_cast<int64_t>(query_tile) * group; }
};

// Scratch of one thread, in floats: query rows (pre-scaled) and accumulators per (row, head) pair,
// running max and sum per pair, one K and one V block widened to float32, one block of scores.
int64_t scratch_floats(const Geometry& g) {
  const int64_t p = g.pairs(), d = g.head_dim, bs = g.block_size;
  return 2 * p * d + 2 * p + 2 * bs * d + bs;
}

inline float dot(const float* a, const float* b, int n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int j = 0; j < n; ++j) s += a[j] * b[j];
  return s;
}

template <typename T>
void attend_item(const Geometry& g, T* out, const T* q, const T* k_cache, const T* v_cache, const int32_t* table,
                 int kv_len, int q_len, int64_t q_offset, int row0, int kv_head, float* scratch) {
  const int d = g.head_dim, bs = g.block_size, group = g.group;
  const int rows = q_len - row0 < g.query_tile ? q_len - row0 : g.query_tile;
  const int pairs = rows * group;
  float* qf = scratch;
  float* acc = qf + g.pairs() * d;
  float* run_max = acc + g.pairs() * d;
  float* run_sum = run_max + g.pairs();
  float* kbuf = run_sum + g.pairs();
  float* vbuf = kbuf + static_cast<int64_t>(bs) * d;
  float* scores = vbuf + static_cast<int64_t>(bs) * d;

  // Pair p = (row r, head h): query row r of the tile, query head kv_head * group + h.
  for (int r = 0; r < rows; ++r) {
    for (int h = 0; h < group; ++h) {
      const int p = r * group + h;
      const T* src = q + ((q_offset + row0 + r) * g.num_q_heads + kv_head * group + h) * d;
      for (int j = 0; j < d; ++j) qf[p * d + j] = to_float(src[j]) * g.scale;
      for (int j = 0; j < d; ++j) acc[p * d + j] = 0.0f;
      run_max[p] = -INFINITY;
      run_sum[p] = 0.0f;
    }
  }
  // Row r of the tile sits at absolute position pos(r) = kv_len - q_len + row0 + r (bottom-right
  // aligned) and sees keys [first_visible(r), end_visible(r)): from pos - window (sliding window) to
  // pos inclusive when causal, else to kv_len. Both bounds grow with r.
  auto pos = [&](int r) { return kv_len - q_len + row0 + r; };
  auto end_visible = [&](int r) { return g.causal ? pos(r) + 1 : kv_len; };
  auto first_visible = [&](int r) { return g.window >= 0 && pos(r) > g.window ? pos(r) - g.window : 0; };
  const int tile_keys = end_visible(rows - 1);   // the tile's last row sees the furthest
  const int first_block = first_visible(0) / bs;  // blocks before this are outside every row's window
  const int64_t token_stride = static_cast<int64_t>(g.num_kv_heads) * d;  // between tokens of a block
  const bool capped = g.softcap > 0.0f;

  for (int b = first_block; b * bs < tile_keys; ++b) {
    const int first = b * bs;
    const int in_block = tile_keys - first < bs ? tile_keys - first : bs;
    const int64_t block_base = (static_cast<int64_t>(table[b]) * bs * g.num_kv_heads + kv_head) * d;
    const float* kb;
    const float* vb;
    int64_t stride;
    if constexpr (std::is_same_v<T, float>) {  // read float32 blocks in place
      kb = k_cache + block_base;
      vb = v_cache + block_base;
      stride = token_stride;
    } else {
      for (int t = 0; t < in_block; ++t) {
        const T* ks = k_cache + block_base + t * token_stride;
        const T* vs = v_cache + block_base + t * token_stride;
        for (int j = 0; j < d; ++j) kbuf[t * d + j] = to_float(ks[j]);
        for (int j = 0; j < d; ++j) vbuf[t * d + j] = to_float(vs[j]);
      }
      kb = kbuf;
      vb = vbuf;
      stride = d;
    }
    for (int p = 0; p < pairs; ++p) {
      const int r = p / group;
      const int limit = end_visible(r) - first;
      const int n = limit < in_block ? limit : in_block;
      const int skip = first_visible(r) - first;  // tokens of this block before the row's window
      const int t0 = skip > 0 ? skip : 0;
      if (n <= t0) continue;
      const float slope = g.alibi_slopes ? g.alibi_slopes[kv_head * group + p % group] : 0.0f;
      float block_max = -INFINITY;
      for (int t = t0; t < n; ++t) {
        float s = dot(qf + p * d, kb + t * stride, d);  // q was pre-scaled: s = scale * q.k
        if (capped) s = g.softcap * std::tanh(s / g.softcap);
        s -= slope * std::fabs(static_cast<float>(pos(r) - (first + t)));  // ALiBi: -slope * |distance|
        scores[t] = s;
        block_max = s > block_max ? s : block_max;
      }
      online_softmax_update(scores, t0, n, block_max, run_max[p], run_sum[p], acc + p * d, vb, stride, d);
    }
  }
  for (int p = 0; p < pairs; ++p) {
    const int r = p / group, h = p % group;
    T* dst = out + ((q_offset + row0 + r) * g.num_q_heads + kv_head * group + h) * d;
    const float inv = 1.0f / run_sum[p];
    for (int j = 0; j < d; ++j) dst[j] = from_float<T>(acc[p * d + j] * inv);
  }
}

template <typename T>
void attend_all(const Geometry& g, void* out, const void* q, const void* k_cache, const void* v_cache,
                const int32_t* tables, const int32_t* kv_lens, const int32_t* cu_q, int batch, int max_tiles,
                int num_threads, float* scratch) {
  const int64_t per_thread = scratch_floats(g);
#pragma omp parallel num_threads(num_threads)
  {
    float* mine = scratch + per_thread * omp_get_thread_num();
#pragma omp for collapse(3) schedule(dynamic, 1)
    for (int s = 0; s < batch; ++s) {
      for (int tile = 0; tile < max_tiles; ++tile) {
        for (int h = 0; h < g.num_kv_heads; ++h) {
          const int q_len = cu_q[s + 1] - cu_q[s];
          const int row0 = tile * g.query_tile;
          if (row0 >= q_len) continue;  // this sequence has fewer tiles than the longest
          attend_item<T>(g, static_cast<T*>(out), static_cast<const T*>(q), static_cast<const T*>(k_cache),
                         static_cast<const T*>(v_cache), tables + static_cast<int64_t>(s) * g.table_stride,
                         kv_lens[s], q_len, cu_q[s], row0, h, mine);
        }
      }
    }
  }
}

int check_geometry(int num_q_heads, int num_kv_heads, int head_dim, int block_size, int query_tile) {
  if (num_q_heads < 1 || num_kv_heads < 1 || num_q_heads % num_kv_heads)
    return fail("num_q_heads must be a positive multiple of num_kv_heads");
  if (head_dim < 1 || head_dim > kMaxHeadDim) return fail("head_dim must be within 1 .. 1024");
  if (block_size < 1 || block_size > kMaxBlockSize) return fail("block_size must be within 1 .. 4096");
  if (query_tile < 1 || query_tile > kMaxQueryTile) return fail("query_tile must be within 1 .. 256");
  return ATTNBENCH_CPU_OK;
}

}  // namespace
}  // namespace attnbench_cpu

using namespace attnbench_cpu;

extern "C" int attnbench_cpu_abi_version(void) { return kAbiVersion; }

extern "C" const char* attnbench_cpu_last_error(void) { return g_last_error; }

extern "C" int64_t attnbench_cpu_paged_scratch_floats(int num_q_heads, int num_kv_heads, int head_dim,
                                                      int block_size, int query_tile) {
  if (check_geometry(num_q_heads, num_kv_heads, head_dim, block_size, query_tile)) return 0;
  Geometry g{num_q_heads, num_kv_heads, head_dim, block_size, 0, num_q_heads / num_kv_heads, query_tile,
             false, 1.0f, -1, 0.0f, nullptr};
  return scratch_floats(g);
}

extern "C" int attnbench_cpu_paged_attention(void* out, const void* q, const void* k_cache, const void* v_cache,
                                             const int32_t* block_tables, const int32_t* kv_lens,
                                             const int32_t* cu_seqlens_q, int batch, int num_q_heads,
                                             int num_kv_heads, int head_dim, int num_blocks, int block_size,
                                             int table_stride,
                                             int dtype, int causal, float softmax_scale, int window,
                                             float softcap, const float* alibi_slopes, int query_tile,
                                             int num_threads, float* scratch, int64_t scratch_floats_given) {
  g_last_error[0] = '\0';
  if (!out || !q || !k_cache || !v_cache || !block_tables || !kv_lens || !cu_seqlens_q || !scratch)
    return fail("a pointer argument is null");
  if (batch < 1 || table_stride < 1 || num_blocks < 1)
    return fail("batch, num_blocks and table_stride must be positive");
  if (num_threads < 1) return fail("num_threads must be positive");
  if (dtype != ATTNBENCH_CPU_FP32 && dtype != ATTNBENCH_CPU_FP16 && dtype != ATTNBENCH_CPU_BF16)
    return fail("dtype must be 0 (fp32), 1 (fp16) or 2 (bf16)");
  if (int rc = check_geometry(num_q_heads, num_kv_heads, head_dim, block_size, query_tile)) return rc;
  if (!(softcap >= 0.0f) || std::isinf(softcap)) return fail("softcap must be 0 (none) or a positive finite number");
  Geometry g{num_q_heads, num_kv_heads, head_dim, block_size, table_stride, num_q_heads / num_kv_heads,
             query_tile, causal != 0, softmax_scale, window < 0 ? -1 : window, softcap, alibi_slopes};
  if (scratch_floats_given < scratch_floats(g) * num_threads)
    return fail("scratch is smaller than num_threads * attnbench_cpu_paged_scratch_floats()");
  int max_q = 0;
  for (int s = 0; s < batch; ++s) {
    const int q_len = cu_seqlens_q[s + 1] - cu_seqlens_q[s];
    if (q_len < 0 || q_len > kv_lens[s]) {
      std::snprintf(g_last_error, sizeof g_last_error, "sequence %d: q_len %d must be within 0 .. kv_len %d", s,
                    q_len, kv_lens[s]);
      return ATTNBENCH_CPU_EINVAL;
    }
    if ((static_cast<int64_t>(kv_lens[s]) + block_size - 1) / block_size > table_stride) {
      std::snprintf(g_last_error, sizeof g_last_error,
                    "sequence %d: kv_len %d needs more blocks than the table's %d columns", s, kv_lens[s],
                    table_stride);
      return ATTNBENCH_CPU_EINVAL;
    }
    const int32_t* table = block_tables + static_cast<int64_t>(s) * table_stride;
    for (int b = 0; b * block_size < kv_lens[s]; ++b) {
      if (table[b] < 0 || table[b] >= num_blocks) {
        std::snprintf(g_last_error, sizeof g_last_error,
                      "sequence %d: block table entry %d is %d, outside the pool's 0 .. %d", s, b, table[b],
                      num_blocks - 1);
        return ATTNBENCH_CPU_EINVAL;
      }
    }
    max_q = q_len > max_q ? q_len : max_q;
  }
  const int max_tiles = (max_q + query_tile - 1) / query_tile;
  switch (dtype) {
    case ATTNBENCH_CPU_FP32:
      attend_all<float>(g, out, q, k_cache, v_cache, block_tables, kv_lens, cu_seqlens_q, batch, max_tiles,
                        num_threads, scratch);
      break;
    case ATTNBENCH_CPU_FP16:
      attend_all<fp16>(g, out, q, k_cache, v_cache, block_tables, kv_lens, cu_seqlens_q, batch, max_tiles,
                       num_threads, scratch);
      break;
    default:
      attend_all<bf16>(g, out, q, k_cache, v_cache, block_tables, kv_lens, cu_seqlens_q, batch, max_tiles,
                       num_threads, scratch);
  }
  return ATTNBENCH_CPU_OK;
}
