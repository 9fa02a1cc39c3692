// Element conversions between the storage dtypes and float32, by bit manipulation (no compiler
// half-precision types needed). Narrowing rounds to nearest, ties to even, as torch's .to() does.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace attnbench_cpu {

struct bf16 { uint16_t bits; };
struct fp16 { uint16_t bits; };

inline float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint32_t float_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

inline float to_float(float x) { return x; }

// bf16 is the top half of a float32.
inline float to_float(bf16 x) { return bits_to_float(static_cast<uint32_t>(x.bits) << 16); }

inline float to_float(fp16 x) {
  const uint32_t sign = static_cast<uint32_t>(x.bits & 0x8000u) << 16;
  const uint32_t exponent = (x.bits >> 10) & 0x1Fu;
  const uint32_t mantissa = x.bits & 0x3FFu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float32
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return bits_to_float(sign | 0x7F800000u | (mantissa << 13));  // inf, NaN
  return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));  // rebias 15 -> 127
}

template <typename T>
T from_float(float f);

template <>
inline float from_float<float>(float f) { return f; }

template <>
inline bf16 from_float<bf16>(float f) {
  const uint32_t bits = float_to_bits(f);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return bf16{static_cast<uint16_t>((bits >> 16) | 0x40u)};  // quiet NaN
  const uint32_t round = 0x7FFFu + ((bits >> 16) & 1u);  // half of the dropped bits, ties to the even side
  return bf16{static_cast<uint16_t>((bits + round) >> 16)};
}

template <>
inline fp16 from_float<fp16>(float f) {
  const uint32_t bits = float_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return fp16{static_cast<uint16_t>(sign | 0x7E00u)};  // NaN
  if (magnitude >= 0x477FF000u) return fp16{static_cast<uint16_t>(sign | 0x7C00u)};  // >= 65520: inf
  if (magnitude < 0x38800000u) {
    // Below fp16's smallest normal (2^-14): a subnormal count of 2^-24 steps. The scaling by 2^24 is
    // exact, so nearbyint's round-to-nearest-even is the only rounding (1024 encodes 2^-14 itself).
    const float steps = std::nearbyint(bits_to_float(magnitude) * 16777216.0f);
    return fp16{static_cast<uint16_t>(sign | static_cast<uint16_t>(steps))};
  }
  // Normal: drop 13 mantissa bits rounding to nearest even (a carry may bump the exponent), then
  // rebias the exponent from 127 to 15 (112 << 10 in the shifted value).
  const uint32_t rounded = magnitude + 0xFFFu + ((magnitude >> 13) & 1u);
  return fp16{static_cast<uint16_t>(sign | ((rounded >> 13) - (112u << 10)))};
}

}  // namespace attnbench_cpu
