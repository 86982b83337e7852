// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLoss
import Glibc
import Testing

/// `log 2`, the loss of a pair whose policy and reference log-ratios agree.
private let logTwo = 0.6931471805599453

/// Relative tolerance for results that are one softplus and one division:
/// `softplusMaxULPError` ulp plus rounding, at most about 4 * 2^-52 relative.
private let closedFormTolerance = 1e-15

@Test(arguments: LossImplementation.allCases)
func exampleGivesLogTwo(implementation: LossImplementation) throws {
  // (pc - rc) - (pr - rr) = (-1 + 1.5) - (-2 + 2.5) = 0, exactly.
  let batch = Batch.pair(-1, -2, -1.5, -2.5)
  let loss = try implementation.loss(batch, beta: 0.1)
  let error = relativeDifference(loss, logTwo)
  #expect(
    error <= closedFormTolerance,
    """
    \(implementation), \(batch), beta 0.1: expected \(logTwo), \
    observed \(loss), relative error \(error)
    """
  )
}

@Test func defaultStrategyMatchesNamedStrategy() throws {
  var generator = SplitMix64(seed: 11)
  let batch = Batch.random(count: 37, using: &generator)
  let implicit = try dpoLoss(
    policyChosen: batch.policyChosen,
    policyRejected: batch.policyRejected,
    referenceChosen: batch.referenceChosen,
    referenceRejected: batch.referenceRejected
  )
  let explicit = try LossImplementation.kernel(.default).loss(batch)
  #expect(
    implicit.bitPattern == explicit.bitPattern,
    """
    \(batch), default arguments: expected \(explicit) as with beta 0.1 \
    and strategy .default, observed \(implicit)
    """
  )
}

/// Magnitudes `m` for pairs `(pc, pr, rc, rr) = (-m, -3m, -2m, -4m)`. Each
/// `m` has a short significand, so `3m` and `4m` are exact, and both
/// log-ratios are then exactly `m` (Sterbenz), so delta is exactly 0.
private let equalRatioMagnitudes: [Double] = [
  .leastNonzeroMagnitude, 0x1p-1030, 0x1p-1000, 0x1p-60, 0.75, 1, 17.25,
  1e4, 1e8, 0x1.8p500, 0x1p1000, 0x1p1021,
]

@Test(
  arguments: LossImplementation.allCases,
  equalRatioMagnitudes
)
func equalLogRatiosGiveLogTwo(
  implementation: LossImplementation,
  magnitude: Double
) throws {
  let batch = Batch.pair(
    -magnitude,
    -3 * magnitude,
    -2 * magnitude,
    -4 * magnitude
  )
  let loss = try implementation.loss(batch, beta: 0.1)
  let error = relativeDifference(loss, logTwo)
  #expect(
    error <= closedFormTolerance,
    """
    \(implementation), \(batch): expected \(logTwo), observed \(loss), \
    relative error \(error)
    """
  )
}

@Test(arguments: LossImplementation.allCases)
func largerMarginLowersLoss(implementation: LossImplementation) throws {
  // Margins -50...50 in steps of 0.25: beta * delta moves by 0.025, so the
  // loss drops by far more than an ulp at every step.
  var previousLoss = Double.infinity
  var previousMargin = -Double.infinity
  for step in 0...400 {
    let margin = -50 + 0.25 * Double(step)
    let batch = Batch.pair(-100 + margin, -200, -100, -200)
    let loss = try implementation.loss(batch, beta: 0.1)
    #expect(
      loss < previousLoss,
      """
      \(implementation): expected loss at margin \(margin) below \
      \(previousLoss) (margin \(previousMargin)), observed \(loss)
      """
    )
    previousLoss = loss
    previousMargin = margin
  }
}

@Test(arguments: LossImplementation.allCases)
func widerMarginNeverRaisesLoss(implementation: LossImplementation) throws {
  // Margins from -1e6 to 1e6, geometrically spaced, so the loss runs from
  // 1e5 down through the underflow of exp(-beta * delta) to 0.
  var margins: [Double] = []
  var magnitude = 1e6
  while magnitude > 1e-6 {
    margins.append(-magnitude)
    magnitude /= 1.05
  }
  margins += [0] + margins.reversed().map { -$0 }

  var previousLoss = Double.infinity
  for margin in margins {
    let batch = Batch.pair(margin, 0, 0, 0)
    let loss = try implementation.loss(batch, beta: 0.1)
    #expect(
      loss <= previousLoss,
      """
      \(implementation): expected loss at margin \(margin) at most \
      \(previousLoss), observed \(loss)
      """
    )
    previousLoss = loss
  }
}

@Test(arguments: LossImplementation.allCases, [1, 7, 8, 9, 100, 1100])
func batchLossIsMeanOfPairLosses(
  implementation: LossImplementation,
  count: Int
) throws {
  var generator = SplitMix64(seed: UInt64(count))
  let batch = Batch.random(count: count, using: &generator)
  var sum: Float80 = 0
  for index in 0..<count {
    let pair = Batch.pair(
      batch.policyChosen[index],
      batch.policyRejected[index],
      batch.referenceChosen[index],
      batch.referenceRejected[index]
    )
    sum += Float80(try implementation.loss(pair, beta: 0.1))
  }
  let expected = Double(sum / Float80(count))
  let loss = try implementation.loss(batch, beta: 0.1)
  let error = relativeDifference(loss, expected)
  #expect(
    error <= 1e-14,
    """
    \(implementation), \(batch): expected mean of pair losses \(expected), \
    observed \(loss), relative error \(error)
    """
  )
}

@Test(arguments: LossImplementation.allCases)
func finiteBatchLossIsPositive(implementation: LossImplementation) throws {
  var generator = SplitMix64(seed: 0x9051_7173)
  for trial in 0..<200 {
    let count = Int.random(in: 1...300, using: &generator)
    let spread = [0.01, 1, 20, 500][trial % 4]
    let batch = Batch.random(count: count, spread: spread, using: &generator)
    let beta = Double.random(in: 0...1, using: &generator)
    let loss = try implementation.loss(batch, beta: beta)
    #expect(
      loss > 0,
      """
      \(implementation), trial \(trial), \(batch), spread \(spread), \
      beta \(beta): expected a positive loss, observed \(loss)
      """
    )
    #expect(
      loss.isFinite,
      """
      \(implementation), trial \(trial), \(batch), spread \(spread), \
      beta \(beta): expected a finite loss, observed \(loss)
      """
    )
  }
}

@Test(arguments: LossImplementation.allCases, [1, 5, 8, 513])
func zeroBetaGivesLogTwo(
  implementation: LossImplementation,
  count: Int
) throws {
  var generator = SplitMix64(seed: 0xBE7A_0000 + UInt64(count))
  let batch = Batch.random(count: count, spread: 1e4, using: &generator)
  let loss = try implementation.loss(batch, beta: 0)
  let error = relativeDifference(loss, logTwo)
  #expect(
    error <= closedFormTolerance,
    """
    \(implementation), \(batch), beta 0: expected \(logTwo), \
    observed \(loss), relative error \(error)
    """
  )
}

@Test(arguments: LossImplementation.allCases)
func hugeMarginLossUnderflowsToZero(
  implementation: LossImplementation
) throws {
  // softplus(-1000) is about exp(-1000), near 5e-435, far below half the
  // least subnormal double (about 2.5e-324), so the correctly rounded loss
  // is 0.
  let batch = Batch.pair(0, -10_000, 0, 0)
  let loss = try implementation.loss(batch, beta: 0.1)
  #expect(
    loss == 0,
    "\(implementation), \(batch), beta 0.1: expected 0, observed \(loss)"
  )
}

/// A single pair, its `beta`, and the closed form of its loss.
struct ClosedFormCase: CustomStringConvertible {
  var batch: Batch
  var beta: Double

  var description: String { "\(batch), beta \(beta)" }

  /// Computes `softplus(-beta * delta)` in `Float80` from the inputs.
  var exactLoss: Float80 {
    let chosenRatio =
      Float80(batch.policyChosen[0]) - Float80(batch.referenceChosen[0])
    let rejectedRatio =
      Float80(batch.policyRejected[0]) - Float80(batch.referenceRejected[0])
    let z = -Float80(beta) * (chosenRatio - rejectedRatio)
    return max(z, 0) + log1pl(expl(-abs(z)))
  }
}

// Dyadic inputs keep delta and beta * delta exact in Double, so the only
// rounding left is the softplus and its result. Cases with beta 0.1 keep
// |beta * delta| <= 2, where rounding beta * delta moves the loss by at most
// one more ulp.
private let closedFormCases: [ClosedFormCase] = [
  ClosedFormCase(batch: .pair(-10, -12, -11, -11), beta: 0.1),
  ClosedFormCase(batch: .pair(-12, -10, -11, -11), beta: 0.1),
  ClosedFormCase(batch: .pair(-3.5, -9.25, -4, -8), beta: 0.1),
  ClosedFormCase(batch: .pair(-40, -20, -50, -60), beta: 0.0625),
  ClosedFormCase(batch: .pair(-50, -20, -50, -60), beta: 0.5),
  ClosedFormCase(batch: .pair(-90, -20, -50, -60), beta: 0.5),
  ClosedFormCase(batch: .pair(-1, -1, -1, -1.0078125), beta: 1),
  ClosedFormCase(batch: .pair(-700, 0, 0, 0), beta: 1),
  ClosedFormCase(batch: .pair(0, -700, 0, 0), beta: 1),
  ClosedFormCase(batch: .pair(0, -40, 0, 0), beta: 1),
  ClosedFormCase(batch: .pair(-0x1p-30, 0, 0, 0), beta: 2),
]

@Test(arguments: LossImplementation.allCases, closedFormCases)
func singlePairMatchesClosedForm(
  implementation: LossImplementation,
  testCase: ClosedFormCase
) throws {
  let exact = testCase.exactLoss
  let loss = try implementation.loss(testCase.batch, beta: testCase.beta)
  let error = ulpError(observed: loss, exact: exact)
  #expect(
    error <= softplusMaxULPError + 1,
    """
    \(implementation), \(testCase): expected \(exact), observed \(loss), \
    error \(error) ulp
    """
  )
}

@Test func dpoDeltaSubtractsReferenceFirst() {
  // Grouped as (pc - pr) - (rc - rr), the 0.5 would be lost in 2^60.
  let delta = dpoDelta(
    policyChosen: -0x1p60,
    policyRejected: -1.5,
    referenceChosen: -0x1p60,
    referenceRejected: -1
  )
  #expect(
    delta == 0.5,
    "pc -2^60, pr -1.5, rc -2^60, rr -1: expected 0.5, observed \(delta)"
  )
}

/// Arguments of `negativeLogSigmoid` and its exact value where that is
/// known in closed form or underflows.
private let negativeLogSigmoidCases: [(argument: Double, expected: Double)] = [
  (0, logTwo),
  (-0.0, logTwo),
  (-800, 800),
  (800, 0),
  (-.greatestFiniteMagnitude, .greatestFiniteMagnitude),
  (.infinity, 0),
  (-.infinity, .infinity),
]

@Test(arguments: negativeLogSigmoidCases)
func negativeLogSigmoidKnownValues(
  testCase: (argument: Double, expected: Double)
) {
  let observed = negativeLogSigmoid(testCase.argument)
  let error = relativeDifference(observed, testCase.expected)
  #expect(
    error <= closedFormTolerance,
    """
    negativeLogSigmoid(\(testCase.argument)): expected \
    \(testCase.expected), observed \(observed), relative error \(error)
    """
  )
}

@Test func negativeLogSigmoidOfNaNIsNaN() {
  let observed = negativeLogSigmoid(.nan)
  #expect(
    observed.isNaN,
    "negativeLogSigmoid(nan): expected nan, observed \(observed)"
  )
}

@Test func compensatedSumKeepsCancelledTerm() {
  // Plain summation returns 0: the 1 is lost in 1e100.
  var total = CompensatedSum()
  for value in [1e100, 1, -1e100] {
    total.add(value)
  }
  #expect(
    total.value == 1,
    "sum of [1e100, 1, -1e100]: expected 1, observed \(total.value)"
  )
}

@Test func compensatedSumMergesPartialSums() {
  // Each value is a 51-bit integer times 2^e with e in -10...10, so 2^10
  // times the sum is an integer that Int128 represents exactly.
  var generator = SplitMix64(seed: 0x5E55)
  var values: [Double] = []
  var scaledExactSum: Int128 = 0
  for _ in 0..<1000 {
    let significand = Int64.random(
      in: -(1 << 50)...(1 << 50),
      using: &generator
    )
    let exponent = Int.random(in: -10...10, using: &generator)
    values.append(
      Double(sign: .plus, exponent: exponent, significand: Double(significand))
    )
    scaledExactSum += Int128(significand) << (exponent + 10)
  }
  let expected = Double(scaledExactSum) * 0x1p-10

  var whole = CompensatedSum()
  var first = CompensatedSum()
  var second = CompensatedSum()
  for (index, value) in values.enumerated() {
    whole.add(value)
    if index < 400 {
      first.add(value)
    } else {
      second.add(value)
    }
  }
  first.add(second)

  for (name, total) in [("sequential", whole), ("merged", first)] {
    let error = relativeDifference(total.value, expected)
    #expect(
      error <= 2 * Double.ulpOfOne,
      """
      \(name) sum of 1000 values up to 2^60: expected \(expected), \
      observed \(total.value), relative error \(error)
      """
    )
  }
}

@Test(arguments: [Double.infinity, -.infinity])
func compensatedSumKeepsInfinity(infinity: Double) {
  var total = CompensatedSum()
  for value in [1.0, infinity, 2.0] {
    total.add(value)
  }
  #expect(
    total.value == infinity,
    "sum of [1, \(infinity), 2]: expected \(infinity), observed \(total.value)"
  )
}
