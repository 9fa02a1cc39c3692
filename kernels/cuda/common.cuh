// Small device helpers shared by the attention kernels: 16-byte vectors of fp16/bf16, conversion to
// float32, asynchronous global->shared copies (cp.async), ldmatrix and the m16n8k16 tensor-core MMA.
//
// Everything here is sm_80+ PTX (Ampere and Hopper both run it); nothing Hopper-only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace attnbench {

// Elements of a 2-byte type in one 16-byte vector: the unit every global load and copy moves.
constexpr int kVec = 8;

// ---- fp16 / bf16 <-> float32 --------------------------------------------------------------------
// A uint32_t holds two adjacent 2-byte elements (low half = lower address).
template <typename T>
struct Pair;

template <>
struct Pair<__half> {
  static __device__ __forceinline__ float2 to_float2(uint32_t x) {
    __half2 h;
    static_assert(sizeof(h) == sizeof(x), "half2 is 4 bytes");
    __builtin_memcpy(&h, &x, sizeof(x));
    return __half22float2(h);
  }
  static __device__ __forceinline__ uint32_t from_float2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    uint32_t x;
    __builtin_memcpy(&x, &h, sizeof(x));
    return x;
  }
};

template <>
struct Pair<__nv_bfloat16> {
  // bf16 is the top half of a float32: widening is a shift (exact, no rounding).
  static __device__ __forceinline__ float2 to_float2(uint32_t x) {
    return make_float2(__uint_as_float(x << 16), __uint_as_float(x & 0xffff0000u));
  }
  static __device__ __forceinline__ uint32_t from_float2(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    uint32_t x;
    __builtin_memcpy(&x, &h, sizeof(x));
    return x;
  }
};

// Widen one 16-byte vector (8 elements) to 8 floats.
template <typename T>
__device__ __forceinline__ void vec8_to_float(const uint4& v, float (&f)[kVec]) {
  const float2 a = Pair<T>::to_float2(v.x), b = Pair<T>::to_float2(v.y);
  const float2 c = Pair<T>::to_float2(v.z), d = Pair<T>::to_float2(v.w);
  f[0] = a.x; f[1] = a.y; f[2] = b.x; f[3] = b.y;
  f[4] = c.x; f[5] = c.y; f[6] = d.x; f[7] = d.y;
}

template <typename T>
__device__ __forceinline__ float to_float(T x);
template <>
__device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// 2^x with the hardware approximation (ex2.approx: ~2 ulp, and 2^-inf = +0, which masking relies on).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// tanh with the hardware approximation (tanh.approx.f32, sm_75+, one MUFU op): maximum relative error
// about 2^-11 (PTX ISA). For soft-capping, cap * tanh(s / cap) therefore carries an absolute logit error
// of at most ~2^-11 * |capped score| (5e-4 x the score), i.e. a relative error of ~5e-4 on each
// probability: below bf16's output rounding (2^-9) and near fp16's (2^-11); see the check script.
__device__ __forceinline__ float fast_tanh(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// ---- asynchronous copies (cp.async, sm_80+) -----------------------------------------------------
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Copy 16 bytes global -> shared, bypassing L1 (.cg). src_bytes = 0 reads nothing and writes zeros:
// out-of-range rows become zeros, never garbage, so masked lanes stay finite.
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem_dst)),
               "l"(gmem_src), "r"(src_bytes)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Wait until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// ---- tensor cores: ldmatrix + mma.sync m16n8k16 ---------------------------------------------------
// Four 8x8 matrices of 2-byte elements; lanes 8i..8i+7 give the row addresses of matrix i, and
// register i of every lane receives (row lane/4, columns 2*(lane%4), +1) of matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem_row))
               : "memory");
}

// Same, each 8x8 matrix transposed on the way: register i receives (rows 2*(lane%4), +1; column lane/4).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem_row))
               : "memory");
}

// D = A(16x16, row-major) * B(16x8, column-major) + D, float32 accumulators.
// Fragments (g = lane/4, t = lane%4): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..);
// b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g); d0,d1 (g, 2t..2t+1), d2,d3 (g+8, 2t..2t+1).
template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                  uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---- warp reductions -----------------------------------------------------------------------------
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

}  // namespace attnbench
