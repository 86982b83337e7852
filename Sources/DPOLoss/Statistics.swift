// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// Weighted sums over a batch of preference pairs, from which the mean loss
/// and the logged metrics follow.
///
/// The value contains sums, not means, so statistics of micro-batches or of
/// data-parallel shards merge into those of the whole batch with
/// ``merge(_:)``. The kernels add each 512-pair chunk in plain SIMD sums and
/// combine the chunk sums with Neumaier compensation, which is also how
/// ``merge(_:)`` adds, so merging in any order changes a mean by about one
/// ulp. Values that cancel inside one chunk (1e16, 1, -1e16) lose what plain
/// double addition loses there; the scalar reference compensates every pair.
///
/// Each pair `i` contributes with its weight `w_i` (1 without weights). A pair
/// with weight 0 contributes nothing, even if its log-probs are NaN or
/// infinite, so padded pairs can hold any value.
public struct DPOStatistics: Sendable, Equatable {
  /// The number of pairs, including those with weight 0.
  public internal(set) var pairCount = 0
  /// `sum_i w_i`.
  public internal(set) var weightSum = CompensatedSum()
  /// `sum_i w_i * softplus(-beta * delta_i)`.
  public internal(set) var lossSum = CompensatedSum()
  /// `sum_i w_i * beta * (pc_i - rc_i)`.
  public internal(set) var chosenRewardSum = CompensatedSum()
  /// `sum_i w_i * beta * (pr_i - rr_i)`.
  public internal(set) var rejectedRewardSum = CompensatedSum()
  /// `sum_i w_i * (chosen reward_i - rejected reward_i)`.
  public internal(set) var rewardMarginSum = CompensatedSum()
  /// `sum_i w_i` over the pairs whose chosen reward is strictly greater than
  /// their rejected reward. A tie or a NaN reward counts as wrong.
  public internal(set) var correctWeightSum = CompensatedSum()
  /// `sum_i w_i * pc_i`.
  public internal(set) var chosenLogProbSum = CompensatedSum()
  /// `sum_i w_i * pr_i`.
  public internal(set) var rejectedLogProbSum = CompensatedSum()

  /// Creates the statistics of an empty batch, the identity of ``merge(_:)``.
  public init() {}

  /// Adds the sums of `other`, as if its pairs were part of this batch.
  public mutating func merge(_ other: DPOStatistics) {
    pairCount += other.pairCount
    weightSum.add(other.weightSum)
    lossSum.add(other.lossSum)
    chosenRewardSum.add(other.chosenRewardSum)
    rejectedRewardSum.add(other.rejectedRewardSum)
    rewardMarginSum.add(other.rewardMarginSum)
    correctWeightSum.add(other.correctWeightSum)
    chosenLogProbSum.add(other.chosenLogProbSum)
    rejectedLogProbSum.add(other.rejectedLogProbSum)
  }

  /// Returns the statistics of this batch and `other` together.
  public func merging(_ other: DPOStatistics) -> DPOStatistics {
    var merged = self
    merged.merge(other)
    return merged
  }

  /// The weighted mean loss, `lossSum / weightSum`. NaN for an empty value.
  public var loss: Double { mean(lossSum) }

  /// The weighted means that preference-training libraries log. Without
  /// weights they are TRL 1.16.0's plain batch means.
  public var metrics: DPOMetrics {
    DPOMetrics(
      loss: loss,
      chosenReward: mean(chosenRewardSum),
      rejectedReward: mean(rejectedRewardSum),
      rewardAccuracy: mean(correctWeightSum),
      rewardMargin: mean(rewardMarginSum),
      chosenLogProb: mean(chosenLogProbSum),
      rejectedLogProb: mean(rejectedLogProbSum)
    )
  }

  private func mean(_ sum: CompensatedSum) -> Double {
    let total = weightSum.value
    return total > 0 ? sum.value / total : .nan
  }
}

/// The weighted batch means of the loss, implicit rewards and log-probs.
///
/// `beta * (pc - rc)` is the chosen reward and `beta * (pr - rr)` the
/// rejected reward. A NaN log-prob in a pair with positive weight makes the
/// loss, rewards, margin and log-prob means NaN, and that pair counts as
/// wrong in ``rewardAccuracy``, as in TRL.
public struct DPOMetrics: Sendable, Equatable {
  /// Mean loss.
  public var loss: Double
  /// Mean chosen reward, TRL's `rewards/chosen`.
  public var chosenReward: Double
  /// Mean rejected reward, TRL's `rewards/rejected`.
  public var rejectedReward: Double
  /// Weighted fraction of pairs whose chosen reward is strictly greater,
  /// TRL's `rewards/accuracies`.
  public var rewardAccuracy: Double
  /// Mean of chosen minus rejected reward, TRL's `rewards/margins`.
  public var rewardMargin: Double
  /// Mean policy log-prob of the chosen responses, TRL's `logps/chosen`.
  public var chosenLogProb: Double
  /// Mean policy log-prob of the rejected responses, TRL's `logps/rejected`.
  public var rejectedLogProb: Double

  /// The metrics under TRL's log keys (`loss`, `rewards/chosen`, …), in the
  /// order TRL logs them.
  public var namedValues: [(name: String, value: Double)] {
    [
      ("loss", loss),
      ("rewards/chosen", chosenReward),
      ("rewards/rejected", rejectedReward),
      ("rewards/accuracies", rewardAccuracy),
      ("rewards/margins", rewardMargin),
      ("logps/chosen", chosenLogProb),
      ("logps/rejected", rejectedLogProb),
    ]
  }
}
