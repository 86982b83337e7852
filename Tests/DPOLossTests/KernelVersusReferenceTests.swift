// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Glibc
import Testing

@testable import DPOLoss

/// Relative tolerance between the kernel and the scalar reference. Both
/// compute the same sum with per-pair errors of a few ulp and compensated
/// summation, so they agree to about 1e-15.
private let referenceTolerance = 1e-14

/// Checks the kernel with `strategy` against the reference on `batch`.
private func expectKernelMatchesReference(
  _ batch: Batch,
  beta: Double = 0.1,
  strategy: DeltaStrategy,
  sourceLocation: SourceLocation = #_sourceLocation
) throws {
  let expected = try LossImplementation.reference.loss(batch, beta: beta)
  let observed = try LossImplementation.kernel(strategy).loss(
    batch,
    beta: beta
  )
  let error = relativeDifference(observed, expected)
  #expect(
    error <= referenceTolerance,
    """
    kernel (\(strategy)), \(batch), beta \(beta): expected \(expected), \
    observed \(observed), relative error \(error)
    """,
    sourceLocation: sourceLocation
  )
}

@Test(arguments: DeltaStrategy.allCases, 0...70)
func kernelMatchesReferenceSmallBatches(
  strategy: DeltaStrategy,
  count: Int
) throws {
  var generator = SplitMix64(seed: 0x5A11_0000 + UInt64(count))
  let batch = Batch.random(count: count, using: &generator)
  if count == 0 {
    let error = #expect(throws: DPOLossError.self) {
      try LossImplementation.kernel(strategy).loss(batch)
    }
    #expect(
      error == .emptyBatch,
      """
      kernel (\(strategy)), empty batch: expected emptyBatch, observed \
      \(String(describing: error))
      """
    )
    return
  }
  try expectKernelMatchesReference(batch, strategy: strategy)
}

/// Lengths around one and two chunks, where the kernel splits the batch.
private let chunkEdgeLengths = [
  chunkLength - 8, chunkLength - 1, chunkLength, chunkLength + 1,
  chunkLength + 8, 2 * chunkLength - 1, 2 * chunkLength,
  2 * chunkLength + 1, 3 * chunkLength + 5,
]

@Test(arguments: DeltaStrategy.allCases, chunkEdgeLengths)
func kernelMatchesReferenceNearChunkEdges(
  strategy: DeltaStrategy,
  count: Int
) throws {
  var generator = SplitMix64(seed: 0xC4C4_0000 + UInt64(count))
  let batch = Batch.random(count: count, using: &generator)
  try expectKernelMatchesReference(batch, strategy: strategy)
}

@Test func kernelMatchesReferenceMillionPairs() throws {
  var generator = SplitMix64(seed: 0x1_0000_0000)
  let batch = Batch.random(count: 1 << 20, using: &generator)
  for strategy in DeltaStrategy.allCases {
    try expectKernelMatchesReference(batch, strategy: strategy)
  }
}

@Test(
  .enabled(
    if: isOptimizedBuild,
    "16M pairs take minutes in an unoptimized build"
  )
)
func kernelMatchesReferenceSixteenMillionPairs() throws {
  // 16M pairs: 32K chunk sums combined with compensated summation.
  var generator = SplitMix64(seed: 0x1600_0000)
  let batch = Batch.random(count: 1 << 24, using: &generator)
  for strategy in DeltaStrategy.allCases {
    try expectKernelMatchesReference(batch, strategy: strategy)
  }
}

@Test(arguments: [1, 7, 8, 9, 63, 511, 512, 513, 1500, 4099])
func strategiesAgreeBitForBit(count: Int) throws {
  // Both strategies form the same delta and sum in the same order, so the
  // documented contract is an identical result.
  var generator = SplitMix64(seed: 0xB1A5_0000 + UInt64(count))
  let batch = Batch.random(count: count, spread: 200, using: &generator)
  let blas = try LossImplementation.kernel(.blas).loss(batch)
  let fused = try LossImplementation.kernel(.fused).loss(batch)
  #expect(
    blas.bitPattern == fused.bitPattern,
    """
    \(batch): expected blas \(blas) == fused \(fused), difference \
    \(blas - fused)
    """
  )
}

@Test(arguments: DeltaStrategy.allCases, [1e-3, 0.1, 10])
func realisticMagnitudesMatchReference(
  strategy: DeltaStrategy,
  difference: Double
) throws {
  // Sequence log-probs from -1e4 to -1, with policy and reference within
  // `difference` of each other, as late in training.
  var generator = SplitMix64(seed: 0x4EA1 + UInt64(difference * 1000))
  var batch = Batch(
    policyChosen: [],
    policyRejected: [],
    referenceChosen: [],
    referenceRejected: []
  )
  for _ in 0..<1000 {
    let chosen = -pow(10, Double.random(in: 0...4, using: &generator))
    let rejected = -pow(10, Double.random(in: 0...4, using: &generator))
    let chosenShift = Double.random(
      in: -difference...difference,
      using: &generator
    )
    let rejectedShift = Double.random(
      in: -difference...difference,
      using: &generator
    )
    batch.referenceChosen.append(chosen)
    batch.referenceRejected.append(rejected)
    batch.policyChosen.append(chosen + chosenShift)
    batch.policyRejected.append(rejected + rejectedShift)
  }
  for beta in [0.01, 0.1, 0.5] {
    try expectKernelMatchesReference(batch, beta: beta, strategy: strategy)
  }
}

@Test(arguments: DeltaStrategy.allCases, [1.0, 1e-8, 1e300])
func hugeScaledMarginsMatchReference(
  strategy: DeltaStrategy,
  beta: Double
) throws {
  // |beta * delta| up to 1e300: positive margins contribute about 0 and
  // negative ones about |beta * delta|, which stays finite.
  var generator = SplitMix64(seed: UInt64(beta.exponent + 2000))
  var batch = Batch(
    policyChosen: [],
    policyRejected: [],
    referenceChosen: [],
    referenceRejected: []
  )
  for _ in 0..<37 {
    let scaled = pow(10, Double.random(in: 0...300, using: &generator))
    let sign: Double = Bool.random(using: &generator) ? 1 : -1
    batch.policyChosen.append(sign * scaled / beta)
    batch.policyRejected.append(0)
    batch.referenceChosen.append(0)
    batch.referenceRejected.append(0)
  }
  batch.policyChosen[0] = -1e300 / beta
  let loss = try LossImplementation.kernel(strategy).loss(batch, beta: beta)
  #expect(
    loss.isFinite,
    "kernel (\(strategy)), beta \(beta): expected finite, observed \(loss)"
  )
  try expectKernelMatchesReference(batch, beta: beta, strategy: strategy)
}

@Test(arguments: DeltaStrategy.allCases, [0.1, 1, 1e300])
func subnormalMarginsMatchReference(
  strategy: DeltaStrategy,
  beta: Double
) throws {
  // Deltas are random multiples of the least subnormal, below 2^52 of them,
  // put in a different one of the four arrays for each pair.
  var generator = SplitMix64(seed: 0x50B)
  let zeros = [Double](repeating: 0, count: 77)
  var batch = Batch(
    policyChosen: zeros,
    policyRejected: zeros,
    referenceChosen: zeros,
    referenceRejected: zeros
  )
  let maximumSteps: Int64 = (1 << 52) - 1
  for index in 0..<zeros.count {
    let steps = Int64.random(
      in: -maximumSteps...maximumSteps,
      using: &generator
    )
    let subnormal = Double(steps) * Double.leastNonzeroMagnitude
    let array = LogProbArray.allCases[index % 4]
    batch = batch.setting(subnormal, in: array, at: index)
  }
  try expectKernelMatchesReference(batch, beta: beta, strategy: strategy)
}

/// Element offsets of the four slices: policy chosen, policy rejected,
/// reference chosen, reference rejected.
private let sliceOffsets: [[Int]] = [
  [1, 1, 1, 1], [1, 3, 5, 7], [0, 1, 2, 3], [7, 0, 3, 1], [5, 2, 0, 6],
]

@Test(arguments: DeltaStrategy.allCases, sliceOffsets)
func offsetSlicesMatchReference(
  strategy: DeltaStrategy,
  offsets: [Int]
) throws {
  for count in [1, 9, 31, chunkLength + 3] {
    var generator = SplitMix64(seed: 0x0FF5 + UInt64(count))
    let batch = Batch.random(count: count, using: &generator)
    // Prefix each array with `offset` NaNs, which the loss must not read.
    func padded(_ values: [Double], _ offset: Int) -> [Double] {
      Array(repeating: .nan, count: offset) + values
    }
    let policyChosen = padded(batch.policyChosen, offsets[0])
    let policyRejected = padded(batch.policyRejected, offsets[1])
    let referenceChosen = padded(batch.referenceChosen, offsets[2])
    let referenceRejected = padded(batch.referenceRejected, offsets[3])
    let policyChosenSlice = policyChosen[offsets[0]...]
    let policyRejectedSlice = policyRejected[offsets[1]...]
    let referenceChosenSlice = referenceChosen[offsets[2]...]
    let referenceRejectedSlice = referenceRejected[offsets[3]...]

    let expected = try LossImplementation.kernel(strategy).loss(batch)
    let sliced = try dpoLoss(
      policyChosen: policyChosenSlice.span,
      policyRejected: policyRejectedSlice.span,
      referenceChosen: referenceChosenSlice.span,
      referenceRejected: referenceRejectedSlice.span,
      strategy: strategy
    )
    let extracted = try dpoLoss(
      policyChosen: policyChosen.span.extracting(offsets[0]...),
      policyRejected: policyRejected.span.extracting(offsets[1]...),
      referenceChosen: referenceChosen.span.extracting(offsets[2]...),
      referenceRejected: referenceRejected.span.extracting(offsets[3]...),
      strategy: strategy
    )
    let reference = try referenceDPOLoss(
      policyChosen: policyChosenSlice.span,
      policyRejected: policyRejectedSlice.span,
      referenceChosen: referenceChosenSlice.span,
      referenceRejected: referenceRejectedSlice.span
    )

    let context = "kernel (\(strategy)), \(batch), offsets \(offsets)"
    #expect(
      sliced.bitPattern == expected.bitPattern,
      """
      \(context), ArraySlice spans: expected \(expected) as from whole \
      arrays, observed \(sliced)
      """
    )
    #expect(
      extracted.bitPattern == expected.bitPattern,
      """
      \(context), extracted spans: expected \(expected) as from whole \
      arrays, observed \(extracted)
      """
    )
    let error = relativeDifference(sliced, reference)
    #expect(
      error <= referenceTolerance,
      """
      \(context): expected reference \(reference), observed \(sliced), \
      relative error \(error)
      """
    )
  }
}
