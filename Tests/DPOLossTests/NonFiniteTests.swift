// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Testing

@testable import DPOLoss

/// Pairs in the batches of this file: two full chunks and a tail of 13,
/// so the last vector has five padding lanes.
private let batchCount = 2 * chunkLength + 13

/// Positions that exercise the first lane, a vector edge, both sides of each
/// chunk boundary, a full vector of the tail and the last (tail) lane.
private let specialPositions = [
  0, 7, 8, chunkLength - 1, chunkLength, chunkLength + 1,
  2 * chunkLength - 1, 2 * chunkLength, 2 * chunkLength + 9,
  2 * chunkLength + 12,
]

private func randomBatch(seed: UInt64, count: Int = batchCount) -> Batch {
  var generator = SplitMix64(seed: seed)
  return Batch.random(count: count, using: &generator)
}

@Test(arguments: LogProbArray.allCases, specialPositions)
func nanInputGivesNaNLoss(array: LogProbArray, position: Int) throws {
  let batch = randomBatch(seed: 0x4A4E).setting(.nan, in: array, at: position)
  for implementation in LossImplementation.allCases {
    let loss = try implementation.loss(batch)
    #expect(
      loss.isNaN,
      """
      \(implementation), \(batch), NaN in \(array)[\(position)]: expected \
      nan, observed \(loss)
      """
    )
  }
}

@Test(arguments: LogProbArray.allCases, 0..<3)
func nanInTinyBatchGivesNaN(array: LogProbArray, position: Int) throws {
  // Three pairs: one partial vector, five padding lanes.
  let batch = randomBatch(seed: 3, count: 3).setting(
    .nan,
    in: array,
    at: position
  )
  for implementation in LossImplementation.allCases {
    let loss = try implementation.loss(batch)
    #expect(
      loss.isNaN,
      """
      \(implementation), \(batch), NaN in \(array)[\(position)]: expected \
      nan, observed \(loss)
      """
    )
  }
}

/// Ways to make one pair's delta infinite: the array and the value put in it.
private let positiveInfinityDeltas: [(LogProbArray, Double)] = [
  (.policyChosen, .infinity),
  (.policyRejected, -.infinity),
  (.referenceChosen, -.infinity),
  (.referenceRejected, .infinity),
]

private let negativeInfinityDeltas: [(LogProbArray, Double)] = [
  (.policyChosen, -.infinity),
  (.policyRejected, .infinity),
  (.referenceChosen, .infinity),
  (.referenceRejected, -.infinity),
]

@Test(arguments: positiveInfinityDeltas, specialPositions)
func positiveInfiniteDeltaContributesZero(
  infinity: (array: LogProbArray, value: Double),
  position: Int
) throws {
  let finite = randomBatch(seed: 0x1F1F)
  let batch = finite.setting(infinity.value, in: infinity.array, at: position)
  let delta = batch.delta(at: position)
  #expect(
    delta == .infinity,
    "\(batch): expected delta +inf, observed \(delta)"
  )
  let others = finite.removing(at: position)
  let scale = Double(batchCount - 1) / Double(batchCount)

  for implementation in LossImplementation.allCases {
    let expected = try implementation.loss(others) * scale
    let loss = try implementation.loss(batch)
    let error = relativeDifference(loss, expected)
    #expect(
      error <= 1e-14,
      """
      \(implementation), \(infinity.value) in \
      \(infinity.array)[\(position)]: expected the other pairs' mean \
      times (N - 1) / N = \(expected), observed \(loss), relative error \
      \(error)
      """
    )
  }
}

@Test(arguments: negativeInfinityDeltas, specialPositions)
func negativeInfiniteDeltaGivesInfiniteLoss(
  infinity: (array: LogProbArray, value: Double),
  position: Int
) throws {
  let batch = randomBatch(seed: 0x2F2F).setting(
    infinity.value,
    in: infinity.array,
    at: position
  )
  for implementation in LossImplementation.allCases {
    let loss = try implementation.loss(batch)
    #expect(
      loss == .infinity,
      """
      \(implementation), \(infinity.value) in \
      \(infinity.array)[\(position)]: expected +inf, observed \(loss)
      """
    )
  }
}

@Test(arguments: [true, false], specialPositions)
func sameInfinitiesGiveNaN(chosen: Bool, position: Int) throws {
  // -inf - -inf is NaN in IEEE 754, so the pair's loss and the mean are NaN.
  var batch = randomBatch(seed: 0x3F3F)
  let arrays: [LogProbArray] =
    chosen
    ? [.policyChosen, .referenceChosen]
    : [.policyRejected, .referenceRejected]
  for array in arrays {
    batch = batch.setting(-.infinity, in: array, at: position)
  }
  for implementation in LossImplementation.allCases {
    let loss = try implementation.loss(batch)
    #expect(
      loss.isNaN,
      """
      \(implementation), -inf in \(arrays) at \(position): expected nan, \
      observed \(loss)
      """
    )
  }
}

@Test(arguments: positiveInfinityDeltas + negativeInfinityDeltas)
func zeroBetaInfiniteDeltaGivesNaN(
  infinity: (array: LogProbArray, value: Double)
) throws {
  // 0 * inf is NaN, so beta 0 does not hide an infinite delta.
  let batch = randomBatch(seed: 0x4F4F).setting(
    infinity.value,
    in: infinity.array,
    at: chunkLength + 1
  )
  for implementation in LossImplementation.allCases {
    let loss = try implementation.loss(batch, beta: 0)
    #expect(
      loss.isNaN,
      """
      \(implementation), \(infinity.value) in \
      \(infinity.array)[\(chunkLength + 1)], beta 0: expected nan, \
      observed \(loss)
      """
    )
  }
}

/// Positions of a -inf delta and a NaN input in one batch: same vector,
/// same chunk, and different chunks in both orders.
private let mixedPositions: [(infinity: Int, nan: Int)] = [
  (3, 5), (0, chunkLength - 1), (1, chunkLength + 2),
  (chunkLength + 2, 1), (2 * chunkLength + 12, 4),
]

@Test(arguments: mixedPositions)
func nanOutranksInfiniteLoss(positions: (infinity: Int, nan: Int)) throws {
  let batch = randomBatch(seed: 0x5F5F)
    .setting(-.infinity, in: .policyChosen, at: positions.infinity)
    .setting(.nan, in: .referenceRejected, at: positions.nan)
  for implementation in LossImplementation.allCases {
    let loss = try implementation.loss(batch)
    #expect(
      loss.isNaN,
      """
      \(implementation), -inf delta at \(positions.infinity), NaN at \
      \(positions.nan): expected nan, observed \(loss)
      """
    )
  }
}

@Test func bothInfiniteDeltasGiveInfiniteLoss() throws {
  // A +inf delta contributes 0, so a -inf delta still makes the loss +inf.
  let batch = randomBatch(seed: 0x6F6F)
    .setting(-.infinity, in: .policyRejected, at: 4)
    .setting(-.infinity, in: .policyChosen, at: chunkLength + 4)
  for implementation in LossImplementation.allCases {
    let loss = try implementation.loss(batch)
    #expect(
      loss == .infinity,
      """
      \(implementation), +inf delta at 4, -inf delta at \
      \(chunkLength + 4): expected +inf, observed \(loss)
      """
    )
  }
}
