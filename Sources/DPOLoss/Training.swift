// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// Computes, in one pass over a batch, the DPO loss with its metrics and the
/// requested per-pair losses, gradients and rewards.
///
/// With weights `w_i` (1 when `weights` is `nil`) and `W = sum_i w_i`:
///
///     loss           = (1 / W) * sum_i w_i * softplus(-beta * delta_i)
///     d loss / d pc_i = -beta * sigmoid(-beta * delta_i) * w_i / W
///
/// and `d loss / d pr_i = d loss / d rc_i = -d loss / d pc_i`,
/// `d loss / d rr_i = d loss / d pc_i`. The gradient reuses the `exp` of the
/// softplus. A pair with weight 0 gets loss and rewards written as for any
/// pair, but gradient 0, and adds nothing to the statistics even when its
/// log-probs are NaN or infinite.
///
/// Gradient accumulation and data-parallel training: split a batch into
/// parts, call this on each, and ``DPOStatistics/merge(_:)`` the results to
/// get the statistics of the whole batch. The gradients of part `k` are those
/// of its own mean loss. Multiply them by `W_k / W` (its `weightSum` over the
/// merged `weightSum`) to get its share of the whole batch's gradient. When
/// the whole batch's weight total is known in advance, pass it as
/// `gradientWeightTotal` instead, and the parts' gradients add up to the
/// whole batch's as they are.
///
/// Non-finite input follows
/// ``dpoLoss(policyChosen:policyRejected:referenceChosen:referenceRejected:beta:strategy:)-(Span<Double>,_,_,_,_,_)``:
/// NaN gives NaN loss, rewards and gradient for that pair (and NaN means),
/// `delta = +inf` gives loss 0 and gradient 0, `delta = -inf` gives loss
/// `+inf` and gradient `-beta * w_i / W` for `pc_i`.
///
/// - Parameters:
///   - policyChosen: Policy log-probs of the chosen responses, one per pair.
///   - policyRejected: Policy log-probs of the rejected responses.
///   - referenceChosen: Reference-model log-probs of the chosen responses.
///   - referenceRejected: Reference-model log-probs of the rejected
///     responses.
///   - weights: Per-pair weights, finite and non-negative with a positive
///     sum; 0 masks a padded pair. `nil` weighs every pair 1.
///   - beta: The inverse temperature; finite and non-negative. Default 0.1.
///   - strategy: How delta is formed. Default ``DeltaStrategy/default``.
///   - gradientWeightTotal: The `W` that gradients divide by; finite and
///     positive. `nil` (the default) uses this batch's weight sum.
///   - outputs: Buffers for the per-pair results to compute; each requested
///     array is resized to the batch size in place.
/// - Returns: The batch's weighted sums, with ``DPOStatistics/loss`` and
///   ``DPOStatistics/metrics``.
/// - Throws: ``DPOLossError/lengthMismatch(policyChosen:policyRejected:referenceChosen:referenceRejected:)``,
///   ``DPOLossError/emptyBatch``, ``DPOLossError/invalidBeta(_:)``,
///   ``DPOLossError/weightsLengthMismatch(weights:pairs:)``,
///   ``DPOLossError/invalidWeight(index:value:)``,
///   ``DPOLossError/zeroTotalWeight``,
///   ``DPOLossError/weightSumOverflow`` and
///   ``DPOLossError/invalidGradientWeightTotal(_:)``. Nothing is written to
///   `outputs` when it throws.
/// - Complexity: O(N) time in one pass over the inputs (and one over the
///   weights to check them). No heap allocation once the arrays in `outputs`
///   have the capacity of the batch. The BLAS strategy calls `cblas_dcopy`
///   and `cblas_daxpy` on the calling thread.
public func dpoLossAndGradients(
  policyChosen: Span<Double>,
  policyRejected: Span<Double>,
  referenceChosen: Span<Double>,
  referenceRejected: Span<Double>,
  weights: Span<Double>? = nil,
  beta: Double = 0.1,
  strategy: DeltaStrategy = .default,
  gradientWeightTotal: Double? = nil,
  outputs: inout DPOOutputs
) throws(DPOLossError) -> DPOStatistics {
  let (count, weightSum, gradientTotal) = try validateTrainingInputs(
    policyChosen.count,
    policyRejected.count,
    referenceChosen.count,
    referenceRejected.count,
    weights: weights,
    beta: beta,
    gradientWeightTotal: gradientWeightTotal
  )
  outputs.resize(to: count)
  var statistics = outputs.withOutputPointers { pointers in
    withBatchPointers(
      policyChosen,
      policyRejected,
      referenceChosen,
      referenceRejected
    ) { batch in
      withOptionalPointer(weights) { weightPointer in
        trainingKernel(
          batch,
          weights: weightPointer,
          count: count,
          beta: beta,
          gradientScale: GradientScale(
            beta: beta,
            weightTotal: gradientTotal
          ),
          strategy: strategy,
          outputs: pointers
        )
      }
    }
  }
  statistics.pairCount = count
  statistics.weightSum = weightSum
  return statistics
}

/// Computes the DPO loss, metrics and requested per-pair outputs of a batch
/// from arrays.
///
/// See ``dpoLossAndGradients(policyChosen:policyRejected:referenceChosen:referenceRejected:weights:beta:strategy:gradientWeightTotal:outputs:)-(Span<Double>,_,_,_,_,_,_,_,_)``.
public func dpoLossAndGradients(
  policyChosen: [Double],
  policyRejected: [Double],
  referenceChosen: [Double],
  referenceRejected: [Double],
  weights: [Double]? = nil,
  beta: Double = 0.1,
  strategy: DeltaStrategy = .default,
  gradientWeightTotal: Double? = nil,
  outputs: inout DPOOutputs
) throws(DPOLossError) -> DPOStatistics {
  try dpoLossAndGradients(
    policyChosen: policyChosen.span,
    policyRejected: policyRejected.span,
    referenceChosen: referenceChosen.span,
    referenceRejected: referenceRejected.span,
    weights: weights?.span,
    beta: beta,
    strategy: strategy,
    gradientWeightTotal: gradientWeightTotal,
    outputs: &outputs
  )
}

/// Computes the DPO loss and metrics of a batch, with no per-pair outputs.
///
/// See ``dpoLossAndGradients(policyChosen:policyRejected:referenceChosen:referenceRejected:weights:beta:strategy:gradientWeightTotal:outputs:)-(Span<Double>,_,_,_,_,_,_,_,_)``.
public func dpoStatistics(
  policyChosen: [Double],
  policyRejected: [Double],
  referenceChosen: [Double],
  referenceRejected: [Double],
  weights: [Double]? = nil,
  beta: Double = 0.1,
  strategy: DeltaStrategy = .default
) throws(DPOLossError) -> DPOStatistics {
  var outputs = DPOOutputs()
  return try dpoLossAndGradients(
    policyChosen: policyChosen,
    policyRejected: policyRejected,
    referenceChosen: referenceChosen,
    referenceRejected: referenceRejected,
    weights: weights,
    beta: beta,
    strategy: strategy,
    outputs: &outputs
  )
}

/// Checks the inputs of a training pass and returns the number of pairs,
/// the weight sum and the weight total that gradients divide by.
func validateTrainingInputs(
  _ policyChosen: Int,
  _ policyRejected: Int,
  _ referenceChosen: Int,
  _ referenceRejected: Int,
  weights: Span<Double>?,
  beta: Double,
  gradientWeightTotal: Double?
) throws(DPOLossError) -> (Int, CompensatedSum, Double) {
  let count = try validateBatch(
    policyChosen,
    policyRejected,
    referenceChosen,
    referenceRejected,
    beta: beta
  )
  let weightSum = try validateWeights(weights, count: count)
  let gradientTotal = gradientWeightTotal ?? weightSum.value
  guard gradientTotal.isFinite, gradientTotal > 0 else {
    throw .invalidGradientWeightTotal(gradientTotal)
  }
  return (count, weightSum, gradientTotal)
}

/// Checks that `weights` has `count` finite, non-negative values with a
/// positive sum, and returns the sum (`count` when `weights` is `nil`).
func validateWeights(
  _ weights: Span<Double>?,
  count: Int
) throws(DPOLossError) -> CompensatedSum {
  var sum = CompensatedSum()
  guard let weights else {
    sum.add(Double(count))
    return sum
  }
  guard weights.count == count else {
    throw .weightsLengthMismatch(weights: weights.count, pairs: count)
  }
  try weights.withUnsafeBufferPointer { buffer throws(DPOLossError) in
    var start = 0
    while start < count {
      let length = min(chunkLength, count - start)
      let chunk = UnsafeBufferPointer(rebasing: buffer[start..<start + length])
      try addWeights(chunk, startingAt: start, to: &sum)
      start += length
    }
  }
  guard sum.value > 0 else { throw .zeroTotalWeight }
  guard sum.value.isFinite else { throw .weightSumOverflow }
  return sum
}

/// Checks one chunk of weights and adds their sum to `sum`.
///
/// The fast path sums eight lanes and tracks their minimum, so a chunk is
/// valid when its sum is finite and its minimum is not negative. Otherwise
/// a scalar pass finds the first invalid weight, or, when every weight is
/// valid but the sum overflowed, adds them one by one. `offset` is the
/// index of the chunk's first weight, for the error.
private func addWeights(
  _ chunk: UnsafeBufferPointer<Double>,
  startingAt offset: Int,
  to sum: inout CompensatedSum
) throws(DPOLossError) {
  let base = chunk.baseAddress!
  let fullEnd = chunk.count & ~7
  var partial = Double8(repeating: 0)
  var minimum = Double8(repeating: 0)
  var index = 0
  while index < fullEnd {
    let weights = load(base + index)
    partial += weights
    minimum = minimum.replacing(with: weights, where: weights .< minimum)
    index += 8
  }
  var total = partial.sum()
  var lowest = minimum.min()
  while index < chunk.count {
    total += chunk[index]
    lowest = min(lowest, chunk[index])
    index += 1
  }
  if total.isFinite, lowest >= 0 {
    sum.add(total)
    return
  }

  for (position, weight) in chunk.enumerated() {
    guard weight.isFinite, weight >= 0 else {
      throw .invalidWeight(index: offset + position, value: weight)
    }
  }
  for weight in chunk {
    sum.add(weight)
  }
}

private func withOptionalPointer<Result>(
  _ span: Span<Double>?,
  _ body: (UnsafePointer<Double>?) -> Result
) -> Result {
  guard let span else { return body(nil) }
  return span.withUnsafeBufferPointer { body($0.baseAddress) }
}
