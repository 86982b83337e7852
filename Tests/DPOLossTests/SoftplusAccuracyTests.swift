// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Glibc
import Testing

@testable import DPOLoss

// The oracles are Glibc's `expl` and `log1pl` in `Float80` (64-bit
// significand), whose error is far below a `Double` ulp. Each sweep reports
// its measured maximum on standard output and asserts the documented bound
// `softplusMaxULPError`.

/// Applies an eight-lane function to every argument, padding the last vector
/// with `padding`.
private func applyLanes(
  _ function: (SIMD8<Double>) -> SIMD8<Double>,
  to arguments: [Double],
  padding: Double
) -> [Double] {
  var results: [Double] = []
  results.reserveCapacity(arguments.count + 8)
  var start = 0
  while start < arguments.count {
    var lanes = SIMD8<Double>(repeating: padding)
    let end = min(start + 8, arguments.count)
    for index in start..<end {
      lanes[index - start] = arguments[index]
    }
    let values = function(lanes)
    for index in start..<end {
      results.append(values[index - start])
    }
    start = end
  }
  return results
}

/// Measures the maximum ulp error of `function` against `exact`.
private func measureMaximumError(
  _ function: (SIMD8<Double>) -> SIMD8<Double>,
  exact: (Double) -> Float80,
  arguments: [Double],
  padding: Double
) -> MaximumError {
  let observed = applyLanes(function, to: arguments, padding: padding)
  var maximum = MaximumError()
  for (argument, value) in zip(arguments, observed) {
    maximum.record(argument: argument, exact: exact(argument), observed: value)
  }
  return maximum
}

/// Returns `count + 1` evenly spaced points from `lower` to `upper`.
private func evenlySpaced(
  from lower: Double,
  to upper: Double,
  count: Int
) -> [Double] {
  let step = (upper - lower) / Double(count)
  return (0...count).map { lower + Double($0) * step }
}

/// Returns `count` doubles with uniformly random bit patterns, so every
/// binade is equally likely. NaNs are dropped.
private func randomBitPatterns(
  count: Int,
  using generator: inout SplitMix64
) -> [Double] {
  var values: [Double] = []
  while values.count < count {
    let value = Double(bitPattern: generator.next())
    if !value.isNaN {
      values.append(value)
    }
  }
  return values
}

/// Intervals of the softplus sweep, one per 2^-10 from -800 to 800. The
/// `exp` and `log1p` sweeps use half as many.
private let sweepCount = 1600 << 10

private func exponentialFloat80(_ x: Double) -> Float80 {
  expl(Float80(x))
}

private func logOnePlusFloat80(_ u: Double) -> Float80 {
  log1pl(Float80(u))
}

/// Arguments where the softplus changes regime, with their neighbors and
/// negations. They are zeros and subnormals, and the points where
/// `log1p(exp(-x))` falls below half an ulp of `x` (48 ln 2) and below
/// 2^-53 (53 ln 2). Then the subnormal and underflow thresholds of `exp`
/// (1022, 1074 and 1075 times ln 2), its overflow threshold (about
/// 709.78), and the largest finite magnitudes.
private let softplusSpecialArguments: [Double] = {
  let magnitudes: [Double] = [
    0,
    .leastNonzeroMagnitude,
    Double.leastNormalMagnitude.nextDown,
    .leastNormalMagnitude,
    0x1p-54,
    0x1p-53,
    0x1p-52,
    1e-300,
    1e-16,
    0.5,
    1,
    2,
    33.27106466687737,
    36.7368005696771,
    37.5,
    708.3964185322641,
    709.0,
    709.782712893384,
    709.79,
    744.4400719213812,
    745.0,
    745.1332191019411,
    745.1332191019412,
    745.5,
    746.0,
    746.5,
    800,
    1e300,
    Double.greatestFiniteMagnitude,
  ]
  var arguments: [Double] = []
  for magnitude in magnitudes {
    for value in [magnitude.nextDown, magnitude, magnitude.nextUp] {
      arguments.append(value)
      arguments.append(-value)
    }
  }
  return arguments.filter { $0.isFinite }
}()

@Test func softplusDenseSweepWithinBound() {
  let arguments = evenlySpaced(from: -800, to: 800, count: sweepCount)
  let maximum = measureMaximumError(
    softplus,
    exact: softplusFloat80,
    arguments: arguments,
    padding: 0
  )
  print("softplus, \(arguments.count) points in [-800, 800]: \(maximum)")
  #expect(
    maximum.error <= softplusMaxULPError,
    "bound \(softplusMaxULPError) ulp exceeded: \(maximum)"
  )
}

@Test func softplusRandomArgumentsWithinBound() {
  var generator = SplitMix64(seed: 0x5EED_50F7)
  var arguments = randomBitPatterns(count: 1 << 17, using: &generator)
  for _ in 0..<(1 << 17) {
    arguments.append(Double.random(in: -800...800, using: &generator))
  }
  let maximum = measureMaximumError(
    softplus,
    exact: softplusFloat80,
    arguments: arguments,
    padding: 0
  )
  print("softplus, \(arguments.count) random points: \(maximum)")
  #expect(
    maximum.error <= softplusMaxULPError,
    "bound \(softplusMaxULPError) ulp exceeded: \(maximum)"
  )
}

@Test(arguments: softplusSpecialArguments)
func softplusSpecialValueWithinBound(argument: Double) {
  let observed = softplus(SIMD8(repeating: argument))[0]
  let exact = softplusFloat80(argument)
  let error = ulpError(observed: observed, exact: exact)
  #expect(
    error <= softplusMaxULPError,
    """
    softplus(\(argument)): expected \(exact), observed \(observed), \
    error \(error) ulp
    """
  )
}

@Test func softplusNonFiniteArguments() {
  let lanes = SIMD8<Double>(.infinity, -.infinity, .nan, 0, 0, 0, 0, 0)
  let observed = softplus(lanes)
  #expect(
    observed[0] == .infinity,
    "softplus(+inf): expected +inf, observed \(observed[0])"
  )
  #expect(
    observed[1] == 0,
    "softplus(-inf): expected 0, observed \(observed[1])"
  )
  #expect(
    observed[2].isNaN,
    "softplus(nan): expected nan, observed \(observed[2])"
  )
}

@Test func softplusLanesIndependent() {
  // A lane's result must not depend on its neighbors, because the kernel
  // pads the last vector of a batch.
  let arguments: [Double] = [-800, -30, -1, 0, 1, 30, 800, .nan]
  let vector = softplus(SIMD8(arguments))
  for (lane, argument) in arguments.enumerated() {
    let alone = softplus(SIMD8(repeating: argument))[0]
    #expect(
      vector[lane].bitPattern == alone.bitPattern,
      """
      softplus(\(argument)) in lane \(lane): expected \(alone) as when \
      computed alone, observed \(vector[lane])
      """
    )
  }
}

@Test func exponentialSweepWithinBound() {
  var generator = SplitMix64(seed: 0xE4B0_0001)
  var arguments = evenlySpaced(from: -760, to: 0, count: sweepCount / 2)
  for value in randomBitPatterns(count: 1 << 16, using: &generator) {
    arguments.append(-abs(value))
  }
  let maximum = measureMaximumError(
    exponentialNonPositive,
    exact: exponentialFloat80,
    arguments: arguments,
    padding: 0
  )
  print("exponentialNonPositive on (-inf, 0]: \(maximum)")
  #expect(
    maximum.error <= softplusMaxULPError,
    "bound \(softplusMaxULPError) ulp exceeded: \(maximum)"
  )
}

@Test(arguments: softplusSpecialArguments.filter { $0 <= 0 })
func exponentialSpecialValueWithinBound(argument: Double) {
  let observed = exponentialNonPositive(SIMD8(repeating: argument))[0]
  let exact = exponentialFloat80(argument)
  let error = ulpError(observed: observed, exact: exact)
  #expect(
    error <= softplusMaxULPError,
    """
    exponentialNonPositive(\(argument)): expected \(exact), observed \
    \(observed), error \(error) ulp
    """
  )
}

@Test func exponentialNonFiniteArguments() {
  let lanes = SIMD8<Double>(-.infinity, .nan, -0.0, 0, 0, 0, 0, 0)
  let observed = exponentialNonPositive(lanes)
  #expect(
    observed[0] == 0,
    "exp(-inf): expected 0, observed \(observed[0])"
  )
  #expect(
    observed[1].isNaN,
    "exp(nan): expected nan, observed \(observed[1])"
  )
  #expect(
    observed[2] == 1,
    "exp(-0.0): expected 1, observed \(observed[2])"
  )
}

@Test func logOnePlusSweepWithinBound() {
  var generator = SplitMix64(seed: 0x1061_0001)
  var arguments = evenlySpaced(from: 0, to: 1, count: sweepCount / 2)
  for _ in 0..<(1 << 16) {
    // Uniform exponent in [2^-1074, 1], so small arguments get equal weight.
    let exponent = Double.random(in: -1074...0, using: &generator)
    arguments.append(min(exp2(exponent), 1))
  }
  let maximum = measureMaximumError(
    logOnePlusUnit,
    exact: logOnePlusFloat80,
    arguments: arguments,
    padding: 0
  )
  print("logOnePlusUnit on [0, 1]: \(maximum)")
  #expect(
    maximum.error <= softplusMaxULPError,
    "bound \(softplusMaxULPError) ulp exceeded: \(maximum)"
  )
}

@Test(
  arguments: [
    0, Double.leastNonzeroMagnitude, Double.leastNormalMagnitude.nextDown,
    Double.leastNormalMagnitude, 1e-300, 0x1p-54, 0x1p-53, 0x1p-53.nextUp,
    0x1p-52, 1e-8, 0.4142135623730950, 0.4142135623730951,
    0.4142135623730952, 0.5, 1.0.nextDown, 1,
  ]
)
func logOnePlusSpecialValueWithinBound(argument: Double) {
  let observed = logOnePlusUnit(SIMD8(repeating: argument))[0]
  let exact = logOnePlusFloat80(argument)
  let error = ulpError(observed: observed, exact: exact)
  #expect(
    error <= softplusMaxULPError,
    """
    logOnePlusUnit(\(argument)): expected \(exact), observed \(observed), \
    error \(error) ulp
    """
  )
}

@Test func logOnePlusNaNArgument() {
  let observed = logOnePlusUnit(SIMD8(repeating: .nan))[0]
  #expect(observed.isNaN, "log1p(nan): expected nan, observed \(observed)")
}
