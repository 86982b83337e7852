// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLoss
import Testing

/// Makes a batch whose arrays have the given lengths, filled with plausible
/// log-probs.
private func batch(lengths: [Int]) -> Batch {
  func logProbs(_ count: Int, _ base: Double) -> [Double] {
    (0..<count).map { base - Double($0) }
  }
  return Batch(
    policyChosen: logProbs(lengths[0], -10),
    policyRejected: logProbs(lengths[1], -12),
    referenceChosen: logProbs(lengths[2], -11),
    referenceRejected: logProbs(lengths[3], -11.5)
  )
}

/// Checks that `implementation` rejects arrays of `lengths` with a
/// `lengthMismatch` that carries all four lengths.
private func expectLengthMismatch(
  _ implementation: LossImplementation,
  lengths: [Int],
  sourceLocation: SourceLocation = #_sourceLocation
) {
  let expected = DPOLossError.lengthMismatch(
    policyChosen: lengths[0],
    policyRejected: lengths[1],
    referenceChosen: lengths[2],
    referenceRejected: lengths[3]
  )

  let error = #expect(
    throws: DPOLossError.self,
    sourceLocation: sourceLocation
  ) {
    try implementation.loss(batch(lengths: lengths))
  }
  #expect(
    error == expected,
    """
    \(implementation), lengths \(lengths): expected \(expected), \
    observed \(String(describing: error))
    """,
    sourceLocation: sourceLocation
  )
}

@Test(arguments: LossImplementation.allCases, LogProbArray.allCases)
func mismatchedLengthIsRejected(
  implementation: LossImplementation,
  array: LogProbArray
) {
  // Six pairs everywhere except nine in `array`.
  let index = LogProbArray.allCases.firstIndex(of: array)!
  var lengths = [6, 6, 6, 6]
  lengths[index] = 9
  expectLengthMismatch(implementation, lengths: lengths)
}

@Test(arguments: LossImplementation.allCases, LogProbArray.allCases)
func emptyArrayAmongFullIsMismatch(
  implementation: LossImplementation,
  array: LogProbArray
) {
  // One empty array is a length mismatch, not an empty batch.
  let index = LogProbArray.allCases.firstIndex(of: array)!
  var lengths = [3, 3, 3, 3]
  lengths[index] = 0
  expectLengthMismatch(implementation, lengths: lengths)
}

@Test(arguments: LossImplementation.allCases)
func mismatchMessageNamesAllLengths(implementation: LossImplementation) {
  let lengths = [7, 12, 15, 18]
  let error = #expect(throws: DPOLossError.self) {
    try implementation.loss(batch(lengths: lengths))
  }
  let message = error.map(String.init(describing:)) ?? ""
  let expectedParts =
    lengths.map { "\($0)" }
    + LogProbArray.allCases.map(\.rawValue)
    + ["one value per preference pair"]
  for part in expectedParts {
    #expect(
      message.contains(part),
      """
      \(implementation), lengths \(lengths): expected the message to \
      contain "\(part)", observed "\(message)"
      """
    )
  }
}

@Test(arguments: LossImplementation.allCases)
func emptyBatchIsRejected(implementation: LossImplementation) {
  let error = #expect(throws: DPOLossError.self) {
    try implementation.loss(batch(lengths: [0, 0, 0, 0]))
  }
  #expect(
    error == .emptyBatch,
    """
    \(implementation), four empty arrays: expected emptyBatch, observed \
    \(String(describing: error))
    """
  )
}

@Test(arguments: DeltaStrategy.allCases)
func emptySpansAreRejected(strategy: DeltaStrategy) {
  let empty: [Double] = []
  let error = #expect(throws: DPOLossError.self) {
    try dpoLoss(
      policyChosen: empty.span,
      policyRejected: empty.span,
      referenceChosen: empty.span,
      referenceRejected: empty.span,
      strategy: strategy
    )
  }
  #expect(
    error == .emptyBatch,
    """
    \(strategy), four empty spans: expected emptyBatch, observed \
    \(String(describing: error))
    """
  )
}

@Test func emptyBatchMessageSaysWhatToPass() {
  let message = DPOLossError.emptyBatch.description
  for part in ["empty", "at least one preference pair"] {
    #expect(
      message.contains(part),
      """
      emptyBatch: expected the message to contain "\(part)", observed \
      "\(message)"
      """
    )
  }
}

private let invalidBetas: [Double] = [
  .nan, .infinity, -.infinity, -0.1, -1, -.leastNonzeroMagnitude,
  -.greatestFiniteMagnitude,
]

@Test(arguments: LossImplementation.allCases, invalidBetas)
func invalidBetaIsRejected(
  implementation: LossImplementation,
  beta: Double
) {
  let error = #expect(throws: DPOLossError.self) {
    try implementation.loss(batch(lengths: [4, 4, 4, 4]), beta: beta)
  }
  // `==` cannot match a NaN payload, so compare the bit patterns.
  var observedBeta: Double?
  if case .invalidBeta(let value) = error {
    observedBeta = value
  }
  #expect(
    observedBeta?.bitPattern == beta.bitPattern,
    """
    \(implementation), beta \(beta): expected invalidBeta(\(beta)), \
    observed \(String(describing: error))
    """
  )
}

@Test(arguments: invalidBetas)
func invalidBetaMessageNamesValue(beta: Double) {
  let message = DPOLossError.invalidBeta(beta).description
  for part in ["invalid beta \(beta)", "finite and non-negative"] {
    #expect(
      message.contains(part),
      """
      invalidBeta(\(beta)): expected the message to contain "\(part)", \
      observed "\(message)"
      """
    )
  }
}

@Test(arguments: LossImplementation.allCases, [0.0, -0.0])
func zeroBetaIsAccepted(
  implementation: LossImplementation,
  beta: Double
) throws {
  // With beta 0 (of either sign) every finite pair contributes log 2.
  let batch = batch(lengths: [5, 5, 5, 5])
  let loss = try implementation.loss(batch, beta: beta)
  let error = relativeDifference(loss, 0.6931471805599453)
  #expect(
    error <= 1e-15,
    """
    \(implementation), \(batch), beta \(beta): expected \
    0.6931471805599453, observed \(loss), relative error \(error)
    """
  )
}

@Test(arguments: LossImplementation.allCases)
func lengthCheckedBeforeBeta(implementation: LossImplementation) {
  // The lengths are checked before beta, so a batch with both faults
  // reports the length mismatch.
  let lengths = [2, 3, 2, 2]
  let error = #expect(throws: DPOLossError.self) {
    try implementation.loss(batch(lengths: lengths), beta: .nan)
  }
  let expected = DPOLossError.lengthMismatch(
    policyChosen: 2,
    policyRejected: 3,
    referenceChosen: 2,
    referenceRejected: 2
  )
  #expect(
    error == expected,
    """
    \(implementation), lengths \(lengths), beta nan: expected \
    \(expected), observed \(String(describing: error))
    """
  )
}
