// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Glibc

/// Computes the same quantities as
/// ``dpoLossAndGradients(policyChosen:policyRejected:referenceChosen:referenceRejected:weights:beta:strategy:gradientWeightTotal:outputs:)-(Span<Double>,_,_,_,_,_,_,_,_)``
/// one pair at a time with Glibc's `exp` and `log1p`: the readable
/// definition and the oracle of the tests.
///
/// Every sum is compensated pair by pair, so where terms cancel inside one
/// 512-pair chunk the reference is the more accurate of the two.
///
/// - Parameters: As for `dpoLossAndGradients`, without `strategy`.
/// - Returns: The batch's weighted sums.
/// - Throws: The same errors as `dpoLossAndGradients`.
/// - Complexity: O(N), with no allocation once `outputs` has the capacity.
public func referenceDPOLossAndGradients(
  policyChosen: [Double],
  policyRejected: [Double],
  referenceChosen: [Double],
  referenceRejected: [Double],
  weights: [Double]? = nil,
  beta: Double = 0.1,
  gradientWeightTotal: Double? = nil,
  outputs: inout DPOOutputs
) throws(DPOLossError) -> DPOStatistics {
  let (count, weightSum, gradientTotal) = try validateTrainingInputs(
    policyChosen.count,
    policyRejected.count,
    referenceChosen.count,
    referenceRejected.count,
    weights: weights?.span,
    beta: beta,
    gradientWeightTotal: gradientWeightTotal
  )
  outputs.resize(to: count)

  var statistics = DPOStatistics()
  statistics.pairCount = count
  statistics.weightSum = weightSum
  for i in 0..<count {
    let weight = weights?[i] ?? 1
    let chosenRatio = policyChosen[i] - referenceChosen[i]
    let rejectedRatio = policyRejected[i] - referenceRejected[i]
    let chosenReward = beta * chosenRatio
    let rejectedReward = beta * rejectedRatio
    let z = -beta * (chosenRatio - rejectedRatio)
    let loss = max(z, 0) + log1p(exp(-abs(z)))
    // d softplus(z) / dz = sigmoid(z), and dz / d pc = -beta.
    let sigmoid = z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z))
    // w / W first: tiny weights keep their precision in the quotient.
    let gradient = weight == 0 ? 0 : beta * sigmoid * (weight / gradientTotal)

    outputs.losses?[i] = loss
    outputs.chosenRewards?[i] = chosenReward
    outputs.rejectedRewards?[i] = rejectedReward
    outputs.policyChosenGradient?[i] = -gradient
    outputs.policyRejectedGradient?[i] = gradient
    outputs.referenceChosenGradient?[i] = gradient
    outputs.referenceRejectedGradient?[i] = -gradient

    guard weight != 0 else { continue }
    statistics.lossSum.add(weight * loss)
    statistics.chosenRewardSum.add(weight * chosenReward)
    statistics.rejectedRewardSum.add(weight * rejectedReward)
    statistics.rewardMarginSum.add(weight * (chosenReward - rejectedReward))
    if chosenReward > rejectedReward {
      statistics.correctWeightSum.add(weight)
    }
    statistics.chosenLogProbSum.add(weight * policyChosen[i])
    statistics.rejectedLogProbSum.add(weight * policyRejected[i])
  }
  return statistics
}
