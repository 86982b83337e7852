// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import AllocationCounter
import DPOLoss

/// A batch of log-probs for the training-pass tests, with optional weights.
struct TrainingBatch {
  var policyChosen: [Double]
  var policyRejected: [Double]
  var referenceChosen: [Double]
  var referenceRejected: [Double]
  var weights: [Double]?

  var count: Int { policyChosen.count }

  /// Seeded sequence log-probs: references spread over hundreds of nats,
  /// policy values within a few nats of them, so rewards have both signs.
  init(count: Int, seed: UInt64, weighted: Bool = false) {
    var generator = SplitMix64(seed: seed)
    referenceChosen = (0..<count).map { _ in
      -Double.random(in: 5...900, using: &generator)
    }
    referenceRejected = (0..<count).map { _ in
      -Double.random(in: 5...900, using: &generator)
    }
    policyChosen = referenceChosen.map {
      $0 + Double.random(in: -30...30, using: &generator)
    }
    policyRejected = referenceRejected.map {
      $0 + Double.random(in: -30...30, using: &generator)
    }
    weights =
      weighted
      ? (0..<count).map { _ in
        // A quarter of the pairs masked, the rest weighted from 0.1 to 3.
        Double.random(in: 0..<1, using: &generator) < 0.25
          ? 0 : Double.random(in: 0.1...3, using: &generator)
      } : nil
    if let weights, !weights.contains(where: { $0 > 0 }) {
      self.weights![0] = 1
    }
  }

  init(
    policyChosen: [Double],
    policyRejected: [Double],
    referenceChosen: [Double],
    referenceRejected: [Double],
    weights: [Double]? = nil
  ) {
    self.policyChosen = policyChosen
    self.policyRejected = policyRejected
    self.referenceChosen = referenceChosen
    self.referenceRejected = referenceRejected
    self.weights = weights
  }

  /// Returns the pairs in `range`, with their weights.
  func slice(_ range: Range<Int>) -> TrainingBatch {
    TrainingBatch(
      policyChosen: Array(policyChosen[range]),
      policyRejected: Array(policyRejected[range]),
      referenceChosen: Array(referenceChosen[range]),
      referenceRejected: Array(referenceRejected[range]),
      weights: weights.map { Array($0[range]) }
    )
  }

  func run(
    strategy: DeltaStrategy,
    beta: Double = 0.1,
    gradientWeightTotal: Double? = nil,
    outputs: inout DPOOutputs
  ) throws -> DPOStatistics {
    try dpoLossAndGradients(
      policyChosen: policyChosen,
      policyRejected: policyRejected,
      referenceChosen: referenceChosen,
      referenceRejected: referenceRejected,
      weights: weights,
      beta: beta,
      strategy: strategy,
      gradientWeightTotal: gradientWeightTotal,
      outputs: &outputs
    )
  }

  func runReference(
    beta: Double = 0.1,
    gradientWeightTotal: Double? = nil,
    outputs: inout DPOOutputs
  ) throws -> DPOStatistics {
    try referenceDPOLossAndGradients(
      policyChosen: policyChosen,
      policyRejected: policyRejected,
      referenceChosen: referenceChosen,
      referenceRejected: referenceRejected,
      weights: weights,
      beta: beta,
      gradientWeightTotal: gradientWeightTotal,
      outputs: &outputs
    )
  }
}

/// `|observed - expected|` relative to `|expected|`, or the absolute
/// difference where `|expected|` is below `floor`. Equal non-finite values
/// (NaN with NaN, the same infinity) give 0.
func relativeError(
  _ observed: Double,
  _ expected: Double,
  floor: Double = 1e-300
) -> Double {
  if observed.isNaN && expected.isNaN { return 0 }
  if observed == expected { return 0 }
  let difference = abs(observed - expected)
  return abs(expected) < floor ? difference : difference / abs(expected)
}

/// Returns the largest ``relativeError(_:_:floor:)`` over two arrays, or infinity if
/// their lengths differ.
func maxRelativeError(
  _ observed: [Double]?,
  _ expected: [Double]?,
  floor: Double = 1e-300
) -> Double {
  guard let observed, let expected, observed.count == expected.count else {
    return observed == nil && expected == nil ? 0 : .infinity
  }
  var worst = 0.0
  for (o, e) in zip(observed, expected) {
    worst = max(worst, relativeError(o, e, floor: floor))
  }
  return worst
}

/// Returns buffers for every output of the training pass.
func allOutputs() -> DPOOutputs {
  DPOOutputs(
    losses: true,
    policyGradients: true,
    referenceGradients: true,
    rewards: true
  )
}

/// Heap allocations made so far by the calling thread.
func allocationCount() -> Int {
  dpo_thread_allocation_count()
}
