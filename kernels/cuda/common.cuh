// Small device helpers shared by the attention kernels: 16-byte vectors of fp16/bf16, conversion to
// float32, fp8 e4m3 pairs widened to fp16/bf16, asynchronous global->shared copies (cp.async),
// ldmatrix and the m16n8k16 tensor-core MMA.
//
// Everything here is sm_80+ PTX (Ampere and Hopper both run it); nothing Hopper-only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <type_traits>
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

// ---- fp8 e4m3 -> fp16 / bf16 pairs (the tensor-core paged decode's fp8 KV cache) ------------------
// Exact: every e4m3 value (3 mantissa bits, 2^-9 subnormal .. 448) is an fp16 and a bf16 value. The
// selector puts two bytes of x at bits 8-15 and 24-31 (the first one low); a 16-bit half is then
// s eeee mmm 0000 0000, and moving eeee mmm down by kShift bits gives T's bit pattern of the byte's
// value times 2^-8 (fp16: exponent bias 15 against e4m3's 7) or 2^-120 (bf16: bias 127), an e4m3
// subnormal landing on a T subnormal with the same mantissa bits. One multiply by 2^8 / 2^120 (a power
// of two: exact, subnormal inputs included) gives the value. 4 integer ops and one HMUL2 per pair, no
// branch, the same on sm_80 and sm_90 (cvt.f16x2.e4m3x2 needs sm_89 and makes fp16 only; cuda_fp8.h's
// fallback below sm_89 loops per element). e4m3fn's NaN byte (s 1111 111) comes out as +-480, finite;
// no quantiser stores it (tests/cache_poison.py writes it into unowned slots: 480 still stands out).
template <typename T>
struct Fp8Widen;
template <>
struct Fp8Widen<__half> {
  static constexpr int kShift = 1;
  static constexpr uint32_t kUnscale = 0x5c005c00u;  // (2^8, 2^8) as half2
  static __device__ __forceinline__ uint32_t mul(uint32_t a, uint32_t b) {
    __half2 x, y;
    __builtin_memcpy(&x, &a, sizeof(a));
    __builtin_memcpy(&y, &b, sizeof(b));
    x = __hmul2(x, y);
    __builtin_memcpy(&a, &x, sizeof(a));
    return a;
  }
};
template <>
struct Fp8Widen<__nv_bfloat16> {
  static constexpr int kShift = 4;
  static constexpr uint32_t kUnscale = 0x7b807b80u;  // (2^120, 2^120) as bfloat162
  static __device__ __forceinline__ uint32_t mul(uint32_t a, uint32_t b) {
    __nv_bfloat162 x, y;
    __builtin_memcpy(&x, &a, sizeof(a));
    __builtin_memcpy(&y, &b, sizeof(b));
    x = __hmul2(x, y);  // sm_80: fma.rn.bf16x2 with -0, sm_90: mul.bf16x2
    __builtin_memcpy(&a, &x, sizeof(a));
    return a;
  }
};

template <typename T>
__device__ __forceinline__ uint32_t fp8x2_to_pair(uint32_t x, uint32_t selector) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  if constexpr (std::is_same_v<T, __half>) {
    // sm_89+: one cvt.rn.f16x2.e4m3x2 per pair (exact) instead of perm, mask, shift and HMUL2. The
    // selector's bytes 1 and 3 name the two fp8 bytes (the bit trick puts them in each half's top
    // byte); here they go to the low 16 bits, the second one upper, as cvt takes them.
    const uint32_t pick = ((selector >> 4) & 0xfu) | (((selector >> 12) & 0xfu) << 4);
    const unsigned short two = static_cast<unsigned short>(__byte_perm(x, 0u, pick) & 0xffffu);
    uint32_t out;
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(out) : "h"(two));
    return out;
  }
#endif
  const uint32_t v = __byte_perm(x, 0u, selector);
  const uint32_t bits = (v & 0x80008000u) | ((v & 0x7f007f00u) >> Fp8Widen<T>::kShift);
  return Fp8Widen<T>::mul(bits, Fp8Widen<T>::kUnscale);
}

// Four e4m3 bytes as two pairs of T: bytes 0, 1 -> lo and bytes 2, 3 -> hi (K's fragment: dims 4t..4t+3).
// sm_89+ with fp16: each half of x goes to one cvt as it is, no byte select first.
template <typename T>
__device__ __forceinline__ void fp8x4_to_pairs(uint32_t x, uint32_t& lo, uint32_t& hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  if constexpr (std::is_same_v<T, __half>) {
    asm("{\n\t.reg .b16 l, h;\n\tmov.b32 {l, h}, %2;\n\tcvt.rn.f16x2.e4m3x2 %0, l;\n\t"
        "cvt.rn.f16x2.e4m3x2 %1, h;\n\t}"
        : "=r"(lo), "=r"(hi)
        : "r"(x));
    return;
  }
#endif
  lo = fp8x2_to_pair<T>(x, 0x1404);
  hi = fp8x2_to_pair<T>(x, 0x3424);
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
