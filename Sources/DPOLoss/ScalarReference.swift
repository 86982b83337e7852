// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Glibc

/// Computes `-log(sigmoid(x)) = softplus(-x)` without overflow or
/// cancellation, with Glibc's `log1p` and `exp`.
@inlinable
public func negativeLogSigmoid(_ x: Double) -> Double {
  let z = -x
  return max(z, 0) + log1p(exp(-abs(z)))
}

/// Computes the DPO margin `(pc - rc) - (pr - rr)` of one pair.
///
/// The grouping matters: sequence log-probs are hundreds while the log-ratios
/// that decide the loss are small, so each policy value is first subtracted
/// from its own reference value.
@inlinable
public func dpoDelta(
  policyChosen: Double,
  policyRejected: Double,
  referenceChosen: Double,
  referenceRejected: Double
) -> Double {
  (policyChosen - referenceChosen) - (policyRejected - referenceRejected)
}

/// A running sum with Neumaier's compensation, which keeps the rounding error
/// of a long sum near one unit in the last place of the result.
public struct CompensatedSum: Sendable, Equatable {
  /// The rounded running sum.
  public private(set) var sum: Double = 0
  /// The accumulated rounding error of `sum`.
  public private(set) var compensation: Double = 0

  /// Creates a zero sum.
  public init() {}

  /// Adds `value` and records the rounding error of the addition.
  public mutating func add(_ value: Double) {
    let total = sum + value
    if abs(sum) >= abs(value) {
      compensation += (sum - total) + value
    } else {
      compensation += (value - total) + sum
    }
    sum = total
  }

  /// Adds another compensated sum, keeping both compensations.
  public mutating func add(_ other: CompensatedSum) {
    add(other.sum)
    compensation += other.compensation
  }

  /// The compensated total. NaN or an infinity if any added value was one.
  public var value: Double {
    // An infinite sum makes the compensation NaN (inf - inf), so report the
    // plain sum in that case.
    sum.isFinite ? sum + compensation : sum
  }
}

/// Computes the mean DPO loss one pair at a time: the readable definition of
/// the loss and the oracle of the tests.
///
///     delta_i = (pc_i - rc_i) - (pr_i - rr_i)
///     loss    = (1 / N) * sum_i softplus(-beta * delta_i)
///
/// - Parameters:
///   - policyChosen: Policy log-probs of the chosen responses.
///   - policyRejected: Policy log-probs of the rejected responses.
///   - referenceChosen: Reference-model log-probs of the chosen responses.
///   - referenceRejected: Reference-model log-probs of the rejected
///     responses.
///   - beta: The inverse temperature of the implicit reward.
/// - Returns: The mean loss: positive for finite input, unless every pair's
///   `beta * delta` exceeds about 745, where each loss underflows to 0. NaN
///   and infinities
///   behave as in ``dpoLoss(policyChosen:policyRejected:referenceChosen:referenceRejected:beta:strategy:)``.
/// - Throws: ``DPOLossError/lengthMismatch(policyChosen:policyRejected:referenceChosen:referenceRejected:)``,
///   ``DPOLossError/emptyBatch`` or ``DPOLossError/invalidBeta(_:)``.
/// - Complexity: O(N) with a libm `exp` and `log1p` per pair; no allocation.
///   The sum is compensated (Neumaier), so its rounding error stays near one
///   ulp for any N.
public func referenceDPOLoss(
  policyChosen: Span<Double>,
  policyRejected: Span<Double>,
  referenceChosen: Span<Double>,
  referenceRejected: Span<Double>,
  beta: Double = 0.1
) throws(DPOLossError) -> Double {
  let count = try validateBatch(
    policyChosen.count,
    policyRejected.count,
    referenceChosen.count,
    referenceRejected.count,
    beta: beta
  )
  var total = CompensatedSum()
  for i in 0..<count {
    let delta = dpoDelta(
      policyChosen: policyChosen[i],
      policyRejected: policyRejected[i],
      referenceChosen: referenceChosen[i],
      referenceRejected: referenceRejected[i]
    )
    total.add(negativeLogSigmoid(beta * delta))
  }
  return total.value / Double(count)
}

/// Computes the mean DPO loss one pair at a time from arrays.
///
/// See ``referenceDPOLoss(policyChosen:policyRejected:referenceChosen:referenceRejected:beta:)-(Span<Double>,_,_,_,_)``.
public func referenceDPOLoss(
  policyChosen: [Double],
  policyRejected: [Double],
  referenceChosen: [Double],
  referenceRejected: [Double],
  beta: Double = 0.1
) throws(DPOLossError) -> Double {
  try referenceDPOLoss(
    policyChosen: policyChosen.span,
    policyRejected: policyRejected.span,
    referenceChosen: referenceChosen.span,
    referenceRejected: referenceRejected.span,
    beta: beta
  )
}

/// Checks the shape of a batch and `beta`, and returns the number of pairs.
func validateBatch(
  _ policyChosen: Int,
  _ policyRejected: Int,
  _ referenceChosen: Int,
  _ referenceRejected: Int,
  beta: Double
) throws(DPOLossError) -> Int {
  guard
    policyChosen == policyRejected,
    policyChosen == referenceChosen,
    policyChosen == referenceRejected
  else {
    throw .lengthMismatch(
      policyChosen: policyChosen,
      policyRejected: policyRejected,
      referenceChosen: referenceChosen,
      referenceRejected: referenceRejected
    )
  }
  guard policyChosen > 0 else { throw .emptyBatch }
  guard beta.isFinite, beta >= 0 else { throw .invalidBeta(beta) }
  return policyChosen
}
