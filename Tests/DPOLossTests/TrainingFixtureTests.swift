// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLoss
import Foundation
import Testing

// The training pass against TRL 1.16.0's own per-pair losses, rewards,
// autograd gradients and logged metrics (see TRLFixtureTests.swift for where
// the fixtures come from).

/// TRL's per-pair results and metrics for one batch.
struct TRLTrainingExpectation {
  var losses: [Double]
  var chosenRewards: [Double]
  var rejectedRewards: [Double]
  var gradientChosen: [Double]
  var gradientRejected: [Double]
  /// Metric values under TRL's keys; only the keys the fixture records.
  var metrics: [String: Double]

  init(
    _ expected: [String: Any],
    metricsKey: String,
    gradientKeys: (chosen: String, rejected: String) = (
      "grad_chosen", "grad_rejected"
    ),
    in folder: String
  ) throws {
    losses = try readFixtureArray(string(expected, "losses", in: folder))
    chosenRewards = try readFixtureArray(
      string(expected, "chosen_rewards", in: folder)
    )
    rejectedRewards = try readFixtureArray(
      string(expected, "rejected_rewards", in: folder)
    )
    gradientChosen = try readFixtureArray(
      string(expected, gradientKeys.chosen, in: folder)
    )
    gradientRejected = try readFixtureArray(
      string(expected, gradientKeys.rejected, in: folder)
    )
    let metricsObject = try dictionary(expected, metricsKey, in: folder)
    metrics = [:]
    for key in metricsObject.keys {
      metrics[key] = try number(metricsObject, key, in: folder)
    }
    metrics["loss"] = try number(expected, "loss", in: folder)
  }
}

/// Runs the training pass with every output on `batch`.
func trainingPass(
  _ batch: Batch,
  beta: Double,
  strategy: DeltaStrategy
) throws -> (DPOStatistics, DPOOutputs) {
  var outputs = DPOOutputs(losses: true, policyGradients: true, rewards: true)
  let statistics = try dpoLossAndGradients(
    policyChosen: batch.policyChosen,
    policyRejected: batch.policyRejected,
    referenceChosen: batch.referenceChosen,
    referenceRejected: batch.referenceRejected,
    beta: beta,
    strategy: strategy,
    outputs: &outputs
  )
  return (statistics, outputs)
}

/// Checks `observed` against TRL's value within `tolerance(expected)`
/// absolute, with NaN matching NaN and infinities matching exactly.
func expectClose(
  _ observed: Double,
  _ expected: Double,
  tolerance: Double,
  _ context: @autoclosure () -> String,
  sourceLocation: SourceLocation = #_sourceLocation
) {
  if expected.isNaN || expected.isInfinite {
    #expect(
      observed.isNaN == expected.isNaN
        && (expected.isNaN || observed == expected),
      "\(context()): expected \(expected), observed \(observed)",
      sourceLocation: sourceLocation
    )
    return
  }
  #expect(
    abs(observed - expected) <= tolerance,
    """
    \(context()): expected \(expected), observed \(observed), difference \
    \(abs(observed - expected)), tolerance \(tolerance)
    """,
    sourceLocation: sourceLocation
  )
}

/// Compares every per-pair output and metric with TRL's, with a tolerance
/// per quantity.
func expectTrainingMatches(
  statistics: DPOStatistics,
  outputs: DPOOutputs,
  expected: TRLTrainingExpectation,
  context: String,
  valueTolerance: (Double) -> Double,
  gradientTolerance: Double
) throws {
  let perPair: [(String, [Double]?, [Double])] = [
    ("losses", outputs.losses, expected.losses),
    ("chosen rewards", outputs.chosenRewards, expected.chosenRewards),
    ("rejected rewards", outputs.rejectedRewards, expected.rejectedRewards),
  ]
  for (name, observed, reference) in perPair {
    let observed = try #require(observed, "\(context): \(name) missing")
    try #require(observed.count == reference.count, "\(context): \(name)")
    for i in reference.indices {
      expectClose(
        observed[i],
        reference[i],
        tolerance: valueTolerance(reference[i]),
        "\(context), \(name) [\(i)]"
      )
    }
  }

  let gradients: [(String, [Double]?, [Double])] = [
    ("d loss / d pc", outputs.policyChosenGradient, expected.gradientChosen),
    (
      "d loss / d pr", outputs.policyRejectedGradient,
      expected.gradientRejected
    ),
  ]
  for (name, observed, reference) in gradients {
    let observed = try #require(observed, "\(context): \(name) missing")
    try #require(observed.count == reference.count, "\(context): \(name)")
    for i in reference.indices {
      expectClose(
        observed[i],
        reference[i],
        tolerance: gradientTolerance,
        "\(context), \(name) [\(i)]"
      )
    }
  }

  for (name, value) in statistics.metrics.namedValues {
    guard let reference = expected.metrics[name] else { continue }
    expectClose(
      value,
      reference,
      tolerance: valueTolerance(reference),
      "\(context), metric \(name)"
    )
  }
}

/// Relative tolerance for TRL's float64 results: both compute the same
/// formula in double precision, so they differ by a few roundings.
private let float64Tolerance = 1e-14

/// Runs the training pass with both strategies on `batch` and compares each
/// result with `expected`.
func expectBothStrategiesMatch(
  _ batch: Batch,
  beta: Double,
  expected: TRLTrainingExpectation,
  context: String,
  valueTolerance: (Double) -> Double,
  gradientTolerance: Double
) throws {
  for strategy in DeltaStrategy.allCases {
    let (statistics, outputs) = try trainingPass(
      batch,
      beta: beta,
      strategy: strategy
    )
    try expectTrainingMatches(
      statistics: statistics,
      outputs: outputs,
      expected: expected,
      context: "\(context), \(strategy)",
      valueTolerance: valueTolerance,
      gradientTolerance: gradientTolerance
    )
  }
}

@Test(
  "training pass matches TRL float64 cases",
  .enabled(if: runsFixtureTests, missingFixturesMessage),
  arguments: float64Cases
)
func trainingPassMatchesTRLCase(folder: String) throws {
  let json = try readCase(folder)
  let batch = try readBatch(dictionary(json, "inputs", in: folder), in: folder)
  let expected = try TRLTrainingExpectation(
    dictionary(json, "expected", in: folder),
    metricsKey: "metrics",
    in: folder
  )
  let largestGradient =
    expected.gradientChosen.filter(\.isFinite).map(abs).max() ?? 0
  try expectBothStrategiesMatch(
    batch,
    beta: try number(json, "beta", in: folder),
    expected: expected,
    context: folder,
    valueTolerance: { float64Tolerance * max(abs($0), 1e-300) },
    gradientTolerance: float64Tolerance * largestGradient
  )
}

@Test(
  "training pass matches TRL float64 steps",
  .enabled(if: runsFixtureTests, missingFixturesMessage),
  arguments: trainingSteps
)
func trainingPassMatchesTRLStep(folder: String) throws {
  let json = try readCase(folder)
  let batch = try readBatch(dictionary(json, "inputs", in: folder), in: folder)
  let beta = try number(json, "beta", in: folder)
  let expected = try TRLTrainingExpectation(
    dictionary(json, "expected_float64", in: folder),
    metricsKey: "metrics",
    in: folder
  )
  try expectBothStrategiesMatch(
    batch,
    beta: beta,
    expected: expected,
    context: folder,
    // Rewards may be exactly 0, so scale the tolerance by at least 1.
    valueTolerance: { float64Tolerance * max(abs($0), 1) },
    gradientTolerance: float64Tolerance * beta / Double(batch.count)
  )
}

/// Returns a bound on the absolute error of TRL's float32 arithmetic on a
/// quantity of size `value`, computed from log-probs up to `logProbScale`.
///
/// TRL forms `pc - rc` and `pr - rr` and their difference in float32, with a
/// rounding of at most 2^-24 relative to operands up to `logProbScale` each,
/// so delta is off by up to `3 * 2^-24 * logProbScale`, and `beta * delta`
/// by `beta` times that. Softplus and sigmoid have slopes of at most 1, and
/// each float32 result adds a few roundings of its own size. A factor of 4
/// over this sum covers the order of TRL's reductions.
func float32Tolerance(
  value: Double,
  beta: Double,
  logProbScale: Double
) -> Double {
  let unit = 0x1p-24
  return 4 * (3 * unit * beta * logProbScale + 4 * unit * abs(value))
}

/// Compares the training pass on float32 inputs with TRL's float32 results,
/// within ``float32Tolerance(value:beta:logProbScale:)``.
func expectMatchesTRLFloat32(
  _ batch: Batch,
  beta: Double,
  expected: TRLTrainingExpectation,
  context: String
) throws {
  let logProbScale =
    [
      batch.policyChosen, batch.policyRejected, batch.referenceChosen,
      batch.referenceRejected,
    ].joined().map(abs).max() ?? 0
  // The gradient is beta / N times a sigmoid: its error is that factor
  // times the error of the sigmoid, whose argument is beta * delta.
  let gradientTolerance =
    beta / Double(batch.count)
    * float32Tolerance(value: 1, beta: beta, logProbScale: logProbScale)
  try expectBothStrategiesMatch(
    batch,
    beta: beta,
    expected: expected,
    context: context,
    valueTolerance: {
      float32Tolerance(value: $0, beta: beta, logProbScale: logProbScale)
    },
    gradientTolerance: gradientTolerance
  )
}

@Test(
  "training pass matches TRL float32 steps",
  .enabled(if: runsFixtureTests, missingFixturesMessage),
  arguments: trainingSteps
)
func trainingPassMatchesTRLFloat32Step(folder: String) throws {
  let json = try readCase(folder)
  // The float32 inputs TRL trained on, widened exactly to double.
  let batch = try readBatch(
    dictionary(json, "inputs_native_dtype", in: folder),
    in: folder
  )
  let beta = try number(json, "beta", in: folder)
  let native = try dictionary(json, "expected_native", in: folder)
  let gradientSets: [(String, String)] = [
    ("grad_chosen", "grad_rejected"),
    ("grad_chosen_autograd_leaf", "grad_rejected_autograd_leaf"),
  ]
  for gradientKeys in gradientSets {
    let expected = try TRLTrainingExpectation(
      native,
      metricsKey: "metrics_from_tensors",
      gradientKeys: gradientKeys,
      in: folder
    )
    try expectMatchesTRLFloat32(
      batch,
      beta: beta,
      expected: expected,
      context: "\(folder) float32, \(gradientKeys.0)"
    )
  }
}

@Test(
  "training pass matches TRL float32 case",
  .enabled(if: runsFixtureTests, missingFixturesMessage)
)
func trainingPassMatchesTRLFloat32Case() throws {
  try #require(fixturesExist, fixturesRequiredMessage)
  let folder = "cases/trl-1.16.0/big/sigmoid__b0.1__ls0__float32"
  let json = try readCase(folder)
  let batch = try readBatch(dictionary(json, "inputs", in: folder), in: folder)
  let expected = try TRLTrainingExpectation(
    dictionary(json, "expected", in: folder),
    metricsKey: "metrics",
    in: folder
  )
  try expectMatchesTRLFloat32(
    batch,
    beta: try number(json, "beta", in: folder),
    expected: expected,
    context: folder
  )
}
