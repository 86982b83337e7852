// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import CKernelSupport

/// Eight double-precision lanes: one AVX-512 register, or two AVX2 registers.
@usableFromInline
typealias Double8 = SIMD8<Double>

/// Whether the build targets FMA (`-target-cpu` with FMA, such as `native`
/// on an x86-64 machine from 2013 or later).
let targetHasFMA = DPO_TARGET_HAS_FMA != 0

/// Returns `a * b + c`, fused into one rounding where the build targets FMA.
///
/// `addingProduct` on a target without FMA becomes a libm `fma` call per
/// lane, so the baseline build takes the two-rounding form instead.
@inline(always)
func multiplyAdd(_ a: Double8, _ b: Double8, _ c: Double8) -> Double8 {
  if targetHasFMA {
    return c.addingProduct(a, b)
  }
  return a * b + c
}

@inline(always)
func multiplyAdd(_ a: Double8, _ b: Double, _ c: Double8) -> Double8 {
  multiplyAdd(a, Double8(repeating: b), c)
}

@inline(always)
func bitPattern(_ x: Double8) -> SIMD8<UInt64> {
  unsafeBitCast(x, to: SIMD8<UInt64>.self)
}

@inline(always)
func double8(bitPattern bits: SIMD8<UInt64>) -> Double8 {
  unsafeBitCast(bits, to: Double8.self)
}

/// Constants of the vector `exp`, with Cody-Waite splitting of ln 2.
enum ExpConstants {
  static let log2e = 1.4426950408889634
  /// Adding 1.5 * 2^52 rounds a double of magnitude below 2^51 to an integer.
  static let roundingShifter = 0x1.8p52
  /// ln 2 split so that `n * ln2High` is exact for |n| < 2^21: the low 32
  /// bits of the significand of `ln2High` are zero.
  static let ln2High = 0x1.62e42fee00000p-1
  static let ln2Low = 0x1.a39ef35793c76p-33
  /// Below this, exp underflows to zero in double precision.
  static let minimumArgument = -746.0
  /// Adding 2^52 + 1023 puts `n + 1023` in the low bits of the significand.
  static let exponentShifter = 0x1p52 + 1023
  /// Below this exponent the scale factor would be subnormal, so the
  /// scaling is split into 2^(n + 64) and 2^-64.
  static let subnormalExponent = -1020.0
}

/// Computes `exp(x)` for `x <= 0` on eight lanes, with no libm call.
///
/// Range reduction: `x = n ln 2 + r` with `|r| <= ln 2 / 2`, then a degree-13
/// Taylor polynomial for `exp(r)` (truncation below 2e-16 relative) and a
/// scale by `2^n` built from bits. Results that are subnormal are scaled in
/// two steps, so they round once. `-infinity` gives 0 and NaN gives NaN.
/// Positive `x` is outside the contract: the result is wrong above about 709.
@inline(always)
func exponentialNonPositive(_ argument: Double8) -> Double8 {
  typealias C = ExpConstants
  let x = argument.replacing(
    with: C.minimumArgument,
    where: argument .< C.minimumArgument
  )

  // n = round(x / ln 2), exactly, as a double.
  let shifter = Double8(repeating: C.roundingShifter)
  let n = multiplyAdd(x, C.log2e, shifter) - shifter
  var r = multiplyAdd(n, -C.ln2High, x)
  r = multiplyAdd(n, -C.ln2Low, r)

  // exp(r) = sum of r^k / k! for k = 0...13, by Horner's rule.
  var p = Double8(repeating: 1.0 / 6_227_020_800)
  p = multiplyAdd(p, r, Double8(repeating: 1.0 / 479_001_600))
  p = multiplyAdd(p, r, Double8(repeating: 1.0 / 39_916_800))
  p = multiplyAdd(p, r, Double8(repeating: 1.0 / 3_628_800))
  p = multiplyAdd(p, r, Double8(repeating: 1.0 / 362_880))
  p = multiplyAdd(p, r, Double8(repeating: 1.0 / 40_320))
  p = multiplyAdd(p, r, Double8(repeating: 1.0 / 5_040))
  p = multiplyAdd(p, r, Double8(repeating: 1.0 / 720))
  p = multiplyAdd(p, r, Double8(repeating: 1.0 / 120))
  p = multiplyAdd(p, r, Double8(repeating: 1.0 / 24))
  p = multiplyAdd(p, r, Double8(repeating: 1.0 / 6))
  p = multiplyAdd(p, r, Double8(repeating: 0.5))
  p = multiplyAdd(p, r, Double8(repeating: 1.0))
  p = multiplyAdd(p, r, Double8(repeating: 1.0))

  // 2^n from bits. For n < -1020 use 2^(n + 64) now and 2^-64 after.
  let isTiny = n .< C.subnormalExponent
  let shiftedN = n.replacing(with: n + 64, where: isTiny)
  let biased = bitPattern(shiftedN + C.exponentShifter)
  let scale = double8(bitPattern: biased &<< 52)
  let result = p * scale
  return result.replacing(with: result * 0x1p-64, where: isTiny)
}

/// Coefficients of the `log` kernel of fdlibm (Sun Microsystems, 1993,
/// `e_log.c`): `R(z)` with `z = s^2` approximates
/// `(log((1 + s) / (1 - s)) - 2s) / s` on |s| < 0.1716 with error below
/// 2^-58.45.
enum LogConstants {
  static let lg1 = 6.666666666666735130e-01
  static let lg2 = 3.999999999940941908e-01
  static let lg3 = 2.857142874366239149e-01
  static let lg4 = 2.222219843214978396e-01
  static let lg5 = 1.818357216161805012e-01
  static let lg6 = 1.531383769920937332e-01
  static let lg7 = 1.479819860511658591e-01
  static let ln2High = 6.93147180369123816490e-01
  static let ln2Low = 1.90821492927058770002e-10
  static let sqrt2 = 1.4142135623730951
}

/// Computes `log1p(u)` for `u` in `[0, 1]` on eight lanes, with no libm call,
/// and returns `1 / (1 + u)` too, which the gradient of softplus reuses.
///
/// `1 + u` is rounded to `y` and its rounding error `c = u - (y - 1)` is kept
/// (exact, because `y` lies in [1, 2]). Then `y = 2^k m` with `k` in {0, 1}
/// and `m` in [0.707, 1.414], `log(m)` comes from the fdlibm kernel, and
/// `log1p(u) = k ln 2 + log(m) + c / y`. For `u` below 2^-53 this returns `u`
/// exactly. NaN gives NaN; arguments outside [0, 1] are outside the contract.
@inline(always)
func logOnePlusUnitAndReciprocal(
  _ u: Double8
) -> (logOnePlus: Double8, reciprocal: Double8) {
  typealias C = LogConstants
  let one = Double8(repeating: 1)
  let y = one + u
  let reciprocal = one / y
  let correction = (u - (y - one)) * reciprocal

  let isUpper = y .> C.sqrt2
  let m = y.replacing(with: y * 0.5, where: isUpper)
  let k = Double8(repeating: 0).replacing(with: 1, where: isUpper)

  let f = m - one
  let s = f / (Double8(repeating: 2) + f)
  let z = s * s
  var r = Double8(repeating: C.lg7)
  r = multiplyAdd(r, z, Double8(repeating: C.lg6))
  r = multiplyAdd(r, z, Double8(repeating: C.lg5))
  r = multiplyAdd(r, z, Double8(repeating: C.lg4))
  r = multiplyAdd(r, z, Double8(repeating: C.lg3))
  r = multiplyAdd(r, z, Double8(repeating: C.lg2))
  r = multiplyAdd(r, z, Double8(repeating: C.lg1))
  r = r * z

  // log(m) = f - hfsq + s (hfsq + R), summed small terms first.
  let hfsq = 0.5 * f * f
  let small = multiplyAdd(k, C.ln2Low, correction)
  let tail = multiplyAdd(s, hfsq + r, small)
  return (k * C.ln2High - ((hfsq - tail) - f), reciprocal)
}

/// Computes `log1p(u)` for `u` in `[0, 1]` on eight lanes; see
/// ``logOnePlusUnitAndReciprocal(_:)``.
@inline(always)
func logOnePlusUnit(_ u: Double8) -> Double8 {
  logOnePlusUnitAndReciprocal(u).logOnePlus
}

/// The pieces of `softplus(z) = log(1 + exp(z))` that the loss and its
/// gradient share.
@usableFromInline
struct SoftplusParts {
  /// `softplus(z)`.
  var value: Double8
  /// `exp(-|z|)`, in [0, 1].
  var expNegativeMagnitude: Double8
}

/// Computes `softplus(z) = max(z, 0) + log1p(exp(-|z|))` on eight lanes.
///
/// Accurate to ``softplusMaxULPError``; see that constant for how it is
/// checked.
/// `softplus(+inf) = +inf`, `softplus(-inf) = 0`, NaN gives NaN.
@inline(always)
func softplusParts(_ z: Double8) -> SoftplusParts {
  let zero = Double8(repeating: 0)
  let isNegative = z .< zero
  let magnitude = z.replacing(with: -z, where: isNegative)
  let positivePart = z.replacing(with: zero, where: isNegative)
  let e = exponentialNonPositive(-magnitude)
  return SoftplusParts(
    value: positivePart + logOnePlusUnit(e),
    expNegativeMagnitude: e
  )
}

@inline(always)
func softplus(_ z: Double8) -> Double8 {
  softplusParts(z).value
}

/// The maximum error of the vector softplus, in units in the last place of
/// the exact result. The tests check it against a `Float80` reference on
/// 1.6M evenly spaced points in [-800, 800], 262K random points and the
/// special values (zeros, subnormals, the exp thresholds, the largest
/// magnitudes, infinities, NaN). Beyond |x| = 800 the result is `max(x, 0)`
/// or a value that underflows to 0. The largest error measured is 1.47 ulp.
public let softplusMaxULPError = 3.0
