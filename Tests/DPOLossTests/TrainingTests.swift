// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLoss
import Testing

@testable import DPOLoss

/// Batch sizes around the vector width and the chunk length.
let trainingSizes: [Int] =
  Array(1...40) + [63, 64, 65]
  + [chunkLength - 8, chunkLength - 1, chunkLength, chunkLength + 1]
  + [chunkLength + 8, 2 * chunkLength + 3, 5_000]

@Suite("Training pass against the scalar reference")
struct TrainingReferenceTests {
  @Test(
    "outputs and metrics match the reference",
    arguments: trainingSizes,
    [false, true]
  )
  func outputsMatchReference(count: Int, weighted: Bool) throws {
    let batch = TrainingBatch(
      count: count,
      seed: UInt64(count) * 31 + (weighted ? 7 : 0),
      weighted: weighted
    )
    var expectedOutputs = allOutputs()
    let expected = try batch.runReference(outputs: &expectedOutputs)

    for strategy in DeltaStrategy.allCases {
      var outputs = allOutputs()
      let statistics = try batch.run(strategy: strategy, outputs: &outputs)
      let context = "N \(count), weighted \(weighted), \(strategy)"

      #expect(statistics.pairCount == count, "\(context)")
      #expect(
        relativeError(statistics.loss, expected.loss) <= 1e-14,
        "\(context): loss \(statistics.loss) vs \(expected.loss)"
      )
      let metrics = statistics.metrics.namedValues
      for (observed, reference) in zip(metrics, expected.metrics.namedValues) {
        // The margin and rewards may be near zero, so compare them to the
        // scale of the rewards.
        let error = relativeError(observed.value, reference.value, floor: 1)
        #expect(
          error <= 1e-14,
          "\(context): \(observed.name) \(observed.value) vs \(reference.value)"
        )
      }
      if !weighted {
        #expect(
          statistics.metrics.rewardAccuracy
            == expected.metrics.rewardAccuracy,
          "\(context): a count of pairs must match exactly"
        )
      }
      #expect(
        maxRelativeError(outputs.losses, expectedOutputs.losses) <= 1e-14,
        "\(context): losses"
      )
      #expect(
        maxRelativeError(
          outputs.policyChosenGradient,
          expectedOutputs.policyChosenGradient
        ) <= 1e-14,
        "\(context): policy chosen gradient"
      )
      #expect(
        maxRelativeError(
          outputs.policyRejectedGradient,
          expectedOutputs.policyRejectedGradient
        ) <= 1e-14,
        "\(context): policy rejected gradient"
      )
      #expect(
        maxRelativeError(
          outputs.referenceChosenGradient,
          expectedOutputs.referenceChosenGradient
        ) <= 1e-14,
        "\(context): reference chosen gradient"
      )
      #expect(
        maxRelativeError(
          outputs.referenceRejectedGradient,
          expectedOutputs.referenceRejectedGradient
        ) <= 1e-14,
        "\(context): reference rejected gradient"
      )
      // Rewards are products of the same two roundings in both.
      #expect(
        outputs.chosenRewards == expectedOutputs.chosenRewards,
        "\(context): chosen rewards"
      )
      #expect(
        outputs.rejectedRewards == expectedOutputs.rejectedRewards,
        "\(context): rejected rewards"
      )
    }
  }

  @Test("mean loss equals dpoLoss", arguments: [1, 9, 1000, 70_000])
  func meanLossEqualsLossOnly(count: Int) throws {
    let batch = TrainingBatch(count: count, seed: 99)
    for strategy in DeltaStrategy.allCases {
      var outputs = DPOOutputs(policyGradients: true)
      let statistics = try batch.run(strategy: strategy, outputs: &outputs)
      let loss = try dpoLoss(
        policyChosen: batch.policyChosen,
        policyRejected: batch.policyRejected,
        referenceChosen: batch.referenceChosen,
        referenceRejected: batch.referenceRejected,
        strategy: strategy
      )
      #expect(
        relativeError(statistics.loss, loss) <= 1e-15,
        "N \(count), \(strategy): \(statistics.loss) vs \(loss)"
      )
    }
  }

  @Test("gradient matches finite differences", arguments: [0.1, 0.5, 2.0])
  func gradientMatchesFiniteDifferences(beta: Double) throws {
    let batch = TrainingBatch(count: 7, seed: 5, weighted: true)
    var outputs = allOutputs()
    _ = try batch.run(strategy: .default, beta: beta, outputs: &outputs)

    // Central differences of the scalar reference's weighted mean loss.
    func loss(_ batch: TrainingBatch) throws -> Double {
      var none = DPOOutputs()
      return try batch.runReference(beta: beta, outputs: &none).loss
    }
    let inputs: [(WritableKeyPath<TrainingBatch, [Double]>, [Double]?)] = [
      (\.policyChosen, outputs.policyChosenGradient),
      (\.policyRejected, outputs.policyRejectedGradient),
      (\.referenceChosen, outputs.referenceChosenGradient),
      (\.referenceRejected, outputs.referenceRejectedGradient),
    ]
    for (keyPath, gradient) in inputs {
      let gradient = try #require(gradient)
      for i in 0..<batch.count {
        let step = 1e-4
        var plus = batch
        plus[keyPath: keyPath][i] += step
        var minus = batch
        minus[keyPath: keyPath][i] -= step
        let numeric = (try loss(plus) - loss(minus)) / (2 * step)
        // Truncation error (step^2 / 6 times the third derivative) and
        // rounding (1e-16 / step) both stay far below this bound.
        #expect(
          abs(numeric - gradient[i]) <= 1e-7 * abs(gradient[i]) + 1e-10,
          "beta \(beta), \(keyPath) [\(i)]: numeric \(numeric), analytic \(gradient[i])"
        )
      }
    }
  }

  @Test("gradient signs follow the formula")
  func gradientSigns() throws {
    let batch = TrainingBatch(count: 50, seed: 3)
    var outputs = allOutputs()
    _ = try batch.run(strategy: .fused, outputs: &outputs)
    let chosen = try #require(outputs.policyChosenGradient)
    for i in 0..<batch.count {
      #expect(chosen[i] < 0, "a higher chosen log-prob always lowers the loss")
      #expect(outputs.policyRejectedGradient?[i] == -chosen[i])
      #expect(outputs.referenceChosenGradient?[i] == -chosen[i])
      #expect(outputs.referenceRejectedGradient?[i] == chosen[i])
    }
  }
}

@Suite("Training pass weights")
struct TrainingWeightTests {
  @Test("integer weight equals repeating the pair")
  func integerWeightEqualsRepetition() throws {
    var batch = TrainingBatch(count: 5, seed: 11)
    batch.weights = [1, 3, 0, 2, 1]
    var repeated = TrainingBatch(
      policyChosen: [],
      policyRejected: [],
      referenceChosen: [],
      referenceRejected: []
    )
    for (i, weight) in batch.weights!.enumerated() {
      for _ in 0..<Int(weight) {
        repeated.policyChosen.append(batch.policyChosen[i])
        repeated.policyRejected.append(batch.policyRejected[i])
        repeated.referenceChosen.append(batch.referenceChosen[i])
        repeated.referenceRejected.append(batch.referenceRejected[i])
      }
    }
    for strategy in DeltaStrategy.allCases {
      var outputs = DPOOutputs()
      let weighted = try batch.run(strategy: strategy, outputs: &outputs)
      let plain = try repeated.run(strategy: strategy, outputs: &outputs)
      let pairs = zip(
        weighted.metrics.namedValues,
        plain.metrics.namedValues
      )
      for (observed, expected) in pairs {
        #expect(
          relativeError(observed.value, expected.value, floor: 1) <= 1e-14,
          "\(strategy) \(observed.name): \(observed.value) vs \(expected.value)"
        )
      }
    }
  }

  @Test("zero weight masks NaN and infinite pairs")
  func zeroWeightMasksNonFinite() throws {
    let clean = TrainingBatch(count: 20, seed: 8)
    var padded = clean
    let garbage: [Double] = [.nan, .infinity, -.infinity, .nan]
    for value in garbage {
      padded.policyChosen.append(value)
      padded.policyRejected.append(-value)
      padded.referenceChosen.append(value)
      padded.referenceRejected.append(0)
    }
    padded.weights = Array(repeating: 1, count: 20) + [0, 0, 0, 0]
    for strategy in DeltaStrategy.allCases {
      var outputs = DPOOutputs(policyGradients: true)
      let masked = try padded.run(strategy: strategy, outputs: &outputs)
      var cleanOutputs = DPOOutputs(policyGradients: true)
      let expected = try clean.run(strategy: strategy, outputs: &cleanOutputs)
      let pairs = zip(masked.metrics.namedValues, expected.metrics.namedValues)
      for (observed, reference) in pairs {
        #expect(
          relativeError(observed.value, reference.value) <= 1e-15,
          "\(strategy) \(observed.name): \(observed.value) vs \(reference.value)"
        )
      }
      let gradient = try #require(outputs.policyChosenGradient)
      #expect(gradient[20...].allSatisfy { $0 == 0 }, "\(strategy)")
      #expect(
        maxRelativeError(
          Array(gradient[..<20]),
          cleanOutputs.policyChosenGradient
        ) <= 1e-15,
        "\(strategy): unmasked gradient"
      )
    }
  }

  @Test("invalid weights are rejected")
  func invalidWeightsRejected() {
    let batch = TrainingBatch(count: 4, seed: 1)
    let cases: [([Double], DPOLossError)] = [
      ([1, 1, 1], .weightsLengthMismatch(weights: 3, pairs: 4)),
      ([1, 1, 1, 1, 1], .weightsLengthMismatch(weights: 5, pairs: 4)),
      ([1, -1, 1, 1], .invalidWeight(index: 1, value: -1)),
      ([1, 1, 1, .infinity], .invalidWeight(index: 3, value: .infinity)),
      ([0, 0, 0, 0], .zeroTotalWeight),
    ]
    for (weights, expected) in cases {
      for strategy in DeltaStrategy.allCases {
        var weightedBatch = batch
        weightedBatch.weights = weights
        var outputs = DPOOutputs(losses: true)
        #expect(throws: expected, "weights \(weights), \(strategy)") {
          _ = try weightedBatch.run(strategy: strategy, outputs: &outputs)
        }
        #expect(outputs.losses == [], "nothing written on error")
      }
    }
  }

  @Test(
    "invalid weight in long batch",
    arguments: [
      (9, -1.0), (700, -1e-300), (1030, Double.nan), (1499, .infinity),
      (511, -.infinity), (512, -2.0),
    ]
  )
  func invalidWeightInLongBatch(index: Int, value: Double) throws {
    // Full vectors and chunk edges, not only the scalar tail.
    var batch = TrainingBatch(count: 1500, seed: 31)
    batch.weights = Array(repeating: 1, count: 1500)
    batch.weights![index] = value
    var outputs = DPOOutputs()
    do {
      _ = try batch.run(strategy: .fused, outputs: &outputs)
      Issue.record("weight \(value) at \(index) was accepted")
    } catch let error as DPOLossError {
      guard case .invalidWeight(let reported, let reportedValue) = error else {
        Issue.record("unexpected error \(error)")
        return
      }
      #expect(reported == index)
      #expect(reportedValue.bitPattern == value.bitPattern)
    }
  }

  @Test("negative zero weights are valid")
  func negativeZeroWeightsAreValid() throws {
    var batch = TrainingBatch(count: 100, seed: 32)
    batch.weights = Array(repeating: -0.0, count: 100)
    batch.weights![50] = 1
    var outputs = DPOOutputs()
    let statistics = try batch.run(strategy: .fused, outputs: &outputs)
    #expect(statistics.weightSum.value == 1)
  }

  @Test("overflowing sum in one chunk")
  func overflowingSumInOneChunk() {
    // Every weight is valid, but two of them in the same chunk overflow.
    var batch = TrainingBatch(count: 1000, seed: 33)
    batch.weights = Array(repeating: 1, count: 1000)
    batch.weights![600] = 1e308
    batch.weights![601] = 1e308
    var outputs = DPOOutputs()
    #expect(throws: DPOLossError.weightSumOverflow) {
      _ = try batch.run(strategy: .fused, outputs: &outputs)
    }
  }

  @Test("NaN weight names its index")
  func nanWeightNamesIndex() throws {
    var batch = TrainingBatch(count: 3, seed: 1)
    batch.weights = [1, 1, .nan]
    var outputs = DPOOutputs()
    do {
      _ = try batch.run(strategy: .fused, outputs: &outputs)
      Issue.record("a NaN weight was accepted")
    } catch let error as DPOLossError {
      guard case .invalidWeight(let index, let value) = error else {
        Issue.record("unexpected error \(error)")
        return
      }
      #expect(index == 2)
      #expect(value.isNaN)
      #expect(error.description.contains("index 2"))
    }
  }

  @Test(
    "invalid gradient weight total is rejected",
    arguments: [0.0, -1.0, .infinity]
  )
  func invalidGradientWeightTotal(total: Double) {
    let batch = TrainingBatch(count: 3, seed: 1)
    var outputs = DPOOutputs(policyGradients: true)
    #expect(
      throws: DPOLossError.invalidGradientWeightTotal(total),
      "total \(total)"
    ) {
      _ = try batch.run(
        strategy: .fused,
        gradientWeightTotal: total,
        outputs: &outputs
      )
    }
  }

  @Test("NaN gradient weight total is rejected")
  func nanGradientWeightTotal() throws {
    let batch = TrainingBatch(count: 3, seed: 1)
    var outputs = DPOOutputs(policyGradients: true)
    do {
      _ = try batch.run(
        strategy: .fused,
        gradientWeightTotal: .nan,
        outputs: &outputs
      )
      Issue.record("a NaN gradientWeightTotal was accepted")
    } catch let error as DPOLossError {
      guard case .invalidGradientWeightTotal(let total) = error else {
        Issue.record("unexpected error \(error)")
        return
      }
      #expect(total.isNaN)
    }
  }

  @Test("overflowing weight sum is rejected")
  func overflowingWeightSum() {
    var batch = TrainingBatch(count: 2, seed: 1)
    batch.weights = [1e308, 1e308]
    for strategy in DeltaStrategy.allCases {
      var outputs = DPOOutputs(policyGradients: true)
      #expect(throws: DPOLossError.weightSumOverflow, "\(strategy)") {
        _ = try batch.run(strategy: strategy, outputs: &outputs)
      }
    }
  }

  @Test(
    "tiny weight totals give finite gradients",
    arguments: [0x1p-1063, 0x1p-1030, Double.leastNonzeroMagnitude]
  )
  func tinyWeightTotals(weight: Double) throws {
    var batch = TrainingBatch(count: 11, seed: 21)
    batch.weights = Array(repeating: weight, count: 11)
    batch.weights![3] = 0
    var expectedOutputs = DPOOutputs(policyGradients: true)
    _ = try batch.runReference(outputs: &expectedOutputs)
    let expected = try #require(expectedOutputs.policyChosenGradient)
    for strategy in DeltaStrategy.allCases {
      var outputs = DPOOutputs(policyGradients: true)
      let statistics = try batch.run(strategy: strategy, outputs: &outputs)
      let gradient = try #require(outputs.policyChosenGradient)
      #expect(statistics.loss.isFinite, "\(strategy), weight \(weight)")
      #expect(gradient[3] == 0, "\(strategy): masked pair")
      let allFinite = gradient.allSatisfy { $0.isFinite }
      #expect(allFinite, "\(strategy), weight \(weight): \(gradient)")
      // Equal weights: the gradient is that of the unweighted mean over the
      // ten unmasked pairs, whatever the weights' size.
      #expect(
        maxRelativeError(gradient, expected) <= 1e-14,
        "\(strategy), weight \(weight): \(gradient) vs \(expected)"
      )
    }
  }

  @Test("weights errors describe the fix")
  func weightErrorDescriptions() {
    let mismatch = DPOLossError.weightsLengthMismatch(weights: 3, pairs: 4)
    #expect(mismatch.description.contains("3"))
    #expect(mismatch.description.contains("4 pairs"))
    let invalid = DPOLossError.invalidWeight(index: 7, value: -2.5)
    #expect(invalid.description.contains("-2.5"))
    #expect(invalid.description.contains("index 7"))
    #expect(DPOLossError.zeroTotalWeight.description.contains("positive"))
  }
}

@Suite("Training pass statistics merging")
struct TrainingMergeTests {
  /// Split points for `parts` parts of `count` pairs, from a seed. Parts
  /// are multiples of 100 pairs long (the last one aside), so none is fully
  /// masked by the random weights.
  func splitPoints(count: Int, parts: Int, seed: UInt64) -> [Int] {
    var generator = SplitMix64(seed: seed)
    var points = Set<Int>()
    while points.count < parts - 1 {
      points.insert(100 * Int.random(in: 1..<(count / 100), using: &generator))
    }
    return [0] + points.sorted() + [count]
  }

  @Test(
    "merged parts equal the whole batch",
    arguments: [1, 2, 3, 7],
    [false, true]
  )
  func mergedPartsEqualWhole(parts: Int, weighted: Bool) throws {
    let batch = TrainingBatch(count: 3_001, seed: 77, weighted: weighted)
    var wholeOutputs = DPOOutputs(policyGradients: true)
    let whole = try batch.run(strategy: .fused, outputs: &wholeOutputs)
    let wholeGradient = try #require(wholeOutputs.policyChosenGradient)
    let points = splitPoints(count: batch.count, parts: parts, seed: 5)

    var merged = DPOStatistics()
    var accumulated: [Double] = []
    var presized: [Double] = []
    for (start, end) in zip(points, points.dropFirst()) {
      let part = batch.slice(start..<end)
      var outputs = DPOOutputs(policyGradients: true)
      let statistics = try part.run(strategy: .blas, outputs: &outputs)
      merged.merge(statistics)
      // Scale each part's gradient by its share of the total weight.
      let share = statistics.weightSum.value / whole.weightSum.value
      accumulated += outputs.policyChosenGradient!.map { $0 * share }
      // Or divide by the whole batch's weight total from the start.
      var presizedOutputs = DPOOutputs(policyGradients: true)
      _ = try part.run(
        strategy: .fused,
        gradientWeightTotal: whole.weightSum.value,
        outputs: &presizedOutputs
      )
      presized += presizedOutputs.policyChosenGradient!
    }

    #expect(merged.pairCount == whole.pairCount)
    let pairs = zip(merged.metrics.namedValues, whole.metrics.namedValues)
    for (observed, expected) in pairs {
      #expect(
        relativeError(observed.value, expected.value, floor: 1) <= 1e-14,
        "\(parts) parts: \(observed.name) \(observed.value) vs \(expected.value)"
      )
    }
    #expect(maxRelativeError(accumulated, wholeGradient) <= 1e-14)
    #expect(maxRelativeError(presized, wholeGradient) <= 1e-14)
  }

  @Test("empty statistics are the merge identity")
  func emptyStatisticsIdentity() throws {
    let batch = TrainingBatch(count: 100, seed: 2)
    let statistics = try dpoStatistics(
      policyChosen: batch.policyChosen,
      policyRejected: batch.policyRejected,
      referenceChosen: batch.referenceChosen,
      referenceRejected: batch.referenceRejected
    )
    #expect(DPOStatistics().merging(statistics) == statistics)
    #expect(statistics.merging(DPOStatistics()) == statistics)
    #expect(DPOStatistics().loss.isNaN, "an empty batch has no mean")
  }
}

@Suite("Training pass non-finite input")
struct TrainingNonFiniteTests {
  @Test("NaN row poisons the means but not accuracy")
  func nanRowBehavesLikeTRL() throws {
    var batch = TrainingBatch(count: 9, seed: 4)
    batch.policyChosen[4] = .nan
    for strategy in DeltaStrategy.allCases {
      var outputs = allOutputs()
      let statistics = try batch.run(strategy: strategy, outputs: &outputs)
      let metrics = statistics.metrics
      #expect(metrics.loss.isNaN, "\(strategy)")
      #expect(metrics.chosenReward.isNaN, "\(strategy)")
      #expect(metrics.rewardMargin.isNaN, "\(strategy)")
      #expect(metrics.chosenLogProb.isNaN, "\(strategy)")
      #expect(!metrics.rejectedReward.isNaN, "\(strategy)")
      #expect(!metrics.rewardAccuracy.isNaN, "\(strategy)")
      #expect(outputs.policyChosenGradient![4].isNaN, "\(strategy)")
      #expect(!outputs.policyChosenGradient![3].isNaN, "\(strategy)")

      // The NaN pair counts as wrong, as a tie does.
      var cleanOutputs = DPOOutputs(rewards: true)
      _ = try batch.run(strategy: strategy, outputs: &cleanOutputs)
      let correct = (0..<batch.count).filter {
        cleanOutputs.chosenRewards![$0] > cleanOutputs.rejectedRewards![$0]
      }
      #expect(!correct.contains(4))
      #expect(
        metrics.rewardAccuracy == Double(correct.count) / 9,
        "\(strategy)"
      )
    }
  }

  @Test("zero beta keeps NaN gradients NaN")
  func zeroBetaKeepsNaN() throws {
    // Two pairs: both fall in the masked tail vector of the kernel.
    let batch = TrainingBatch(
      policyChosen: [.nan, -1],
      policyRejected: [-2, -2],
      referenceChosen: [-1, -1],
      referenceRejected: [-2, -2]
    )
    var expectedOutputs = DPOOutputs(policyGradients: true)
    _ = try batch.runReference(beta: 0, outputs: &expectedOutputs)
    let expected = try #require(expectedOutputs.policyChosenGradient)
    #expect(expected[0].isNaN, "reference: 0 * NaN is NaN")
    for strategy in DeltaStrategy.allCases {
      var outputs = DPOOutputs(policyGradients: true)
      _ = try batch.run(strategy: strategy, beta: 0, outputs: &outputs)
      let gradient = try #require(outputs.policyChosenGradient)
      #expect(gradient[0].isNaN, "\(strategy): \(gradient)")
      #expect(gradient[1] == 0, "\(strategy): \(gradient)")
    }
  }

  @Test("infinite delta gives limits of loss and gradient")
  func infiniteDeltaLimits() throws {
    let batch = TrainingBatch(
      policyChosen: [0, -.infinity, -3],
      policyRejected: [-.infinity, -1, -3],
      referenceChosen: [-1, -1, -3],
      referenceRejected: [-1, -1, -3]
    )
    for strategy in DeltaStrategy.allCases {
      var outputs = allOutputs()
      let statistics = try batch.run(
        strategy: strategy,
        beta: 0.5,
        outputs: &outputs
      )
      #expect(statistics.loss == .infinity, "\(strategy)")
      #expect(outputs.losses![0] == 0, "delta = +inf: loss 0")
      #expect(outputs.losses![1] == .infinity, "delta = -inf: loss +inf")
      #expect(outputs.policyChosenGradient![0] == 0, "delta = +inf")
      #expect(
        outputs.policyChosenGradient![1] == -0.5 / 3,
        "delta = -inf: -beta / N"
      )
      #expect(
        abs(outputs.losses![2] - 0.6931471805599453) <= 1e-16,
        "delta = 0: log 2"
      )
    }
  }
}

#if DEBUG
  /// Unoptimized builds run the stdlib's generic SIMD code, which allocates.
  let isOptimizedBuild = false
#else
  let isOptimizedBuild = true
#endif

@Suite("Training pass allocation")
struct TrainingAllocationTests {
  @Test(
    "repeated steps allocate nothing",
    .enabled(
      if: isOptimizedBuild,
      "unoptimized builds allocate in generic SIMD code"
    ),
    arguments: DeltaStrategy.allCases,
    [false, true]
  )
  func repeatedStepsAllocateNothing(
    strategy: DeltaStrategy,
    weighted: Bool
  ) throws {
    let large = TrainingBatch(count: 4_099, seed: 12, weighted: weighted)
    let small = TrainingBatch(count: 700, seed: 13, weighted: weighted)
    var outputs = allOutputs()
    // The first step sizes the output arrays.
    _ = try large.run(strategy: strategy, outputs: &outputs)

    let before = allocationCount()
    var total = 0.0
    for batch in [large, small, large, small, small] {
      total += try batch.run(strategy: strategy, outputs: &outputs).loss
      total += try dpoLoss(
        policyChosen: batch.policyChosen,
        policyRejected: batch.policyRejected,
        referenceChosen: batch.referenceChosen,
        referenceRejected: batch.referenceRejected,
        strategy: strategy
      )
    }
    let allocations = allocationCount() - before
    #expect(total.isFinite)
    #expect(
      allocations == 0,
      "\(strategy), weighted \(weighted): \(allocations) heap allocations"
    )
  }

  @Test("allocation counter sees array growth")
  func counterSeesAllocation() {
    let before = allocationCount()
    var values: [Double] = []
    for i in 0..<100 {
      values.append(Double(i))
    }
    #expect(allocationCount() > before)
    #expect(values.count == 100)
  }
}
