// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// An input that the loss functions reject before computing anything.
///
/// Each case carries the offending values, and `description` states what to
/// change.
public enum DPOLossError: Error, Equatable, Sendable {
  /// The four log-prob arrays have different lengths.
  case lengthMismatch(
    policyChosen: Int,
    policyRejected: Int,
    referenceChosen: Int,
    referenceRejected: Int
  )
  /// The batch has no pairs, so its mean loss is undefined.
  case emptyBatch
  /// `beta` is NaN, infinite or negative.
  case invalidBeta(Double)
  /// The weights array does not have one weight per pair.
  case weightsLengthMismatch(weights: Int, pairs: Int)
  /// A weight is negative, NaN or infinite.
  case invalidWeight(index: Int, value: Double)
  /// Every weight is zero, so the weighted mean is undefined.
  case zeroTotalWeight
  /// The weights are finite but their sum overflows to infinity.
  case weightSumOverflow
  /// The weight total that gradients divide by is not finite and positive.
  case invalidGradientWeightTotal(Double)
}

extension DPOLossError: CustomStringConvertible {
  public var description: String {
    switch self {
    case .lengthMismatch(let pc, let pr, let rc, let rr):
      return "log-prob arrays differ in length: policyChosen has \(pc), "
        + "policyRejected \(pr), referenceChosen \(rc), referenceRejected "
        + "\(rr). Pass one value per preference pair in each array."
    case .emptyBatch:
      return "the batch is empty, so its mean loss is undefined. "
        + "Pass at least one preference pair."
    case .invalidBeta(let beta):
      return "invalid beta \(beta): beta must be finite and non-negative. "
        + "DPO commonly uses values from 0.01 to 0.5 (default 0.1)."
    case .weightsLengthMismatch(let weights, let pairs):
      return "weights has \(weights) values but the batch has \(pairs) "
        + "pairs. Pass one weight per pair (0 masks a pair)."
    case .invalidWeight(let index, let value):
      return "invalid weight \(value) at index \(index): weights must be "
        + "finite and non-negative. Use 0 to mask a pair."
    case .zeroTotalWeight:
      return "every weight is 0, so the weighted mean is undefined. "
        + "Give at least one pair a positive weight."
    case .weightSumOverflow:
      return "the weights sum to infinity in double precision. Scale them "
        + "down: only their ratios change the loss and metrics."
    case .invalidGradientWeightTotal(let total):
      return "invalid gradientWeightTotal \(total): it must be finite and "
        + "positive. Pass the weight sum of the whole batch, or nil."
    }
  }
}
