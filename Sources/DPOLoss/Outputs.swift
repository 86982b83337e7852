// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// Caller-owned buffers for the per-pair results of
/// ``dpoLossAndGradients(policyChosen:policyRejected:referenceChosen:referenceRejected:weights:beta:strategy:gradientWeightTotal:outputs:)-(Span<Double>,_,_,_,_,_,_,_,_)``.
///
/// A `nil` array is not computed. A requested array is resized to the batch
/// size in place: keep one value and pass it to every step, and once its
/// arrays have the capacity of the largest batch, steps make no heap
/// allocation. Copying an array out (`let g = outputs.policyChosenGradient`)
/// shares its storage, so the next step has to copy it. To stay
/// allocation-free, read the elements through the value, or copy them into
/// storage of your own.
public struct DPOOutputs: Sendable {
  /// Per-pair loss `softplus(-beta * delta_i)`, unweighted.
  public var losses: [Double]?
  /// `d loss / d pc_i = -beta * sigmoid(-beta * delta_i) * w_i / W`.
  public var policyChosenGradient: [Double]?
  /// `d loss / d pr_i`, the negation of the chosen gradient.
  public var policyRejectedGradient: [Double]?
  /// `d loss / d rc_i`, the negation of the policy chosen gradient.
  public var referenceChosenGradient: [Double]?
  /// `d loss / d rr_i`, equal to the policy chosen gradient.
  public var referenceRejectedGradient: [Double]?
  /// Per-pair chosen reward `beta * (pc_i - rc_i)`.
  public var chosenRewards: [Double]?
  /// Per-pair rejected reward `beta * (pr_i - rr_i)`.
  public var rejectedRewards: [Double]?

  /// Creates buffers for the requested outputs.
  ///
  /// - Parameters:
  ///   - losses: Whether to compute per-pair losses.
  ///   - policyGradients: Whether to compute the gradient with respect to
  ///     the policy chosen and rejected log-probs.
  ///   - referenceGradients: Whether to compute the gradient with respect to
  ///     the reference log-probs (for a reference model that is trained).
  ///   - rewards: Whether to compute per-pair chosen and rejected rewards.
  ///   - capacity: Pairs to reserve room for now, so that the first steps
  ///     up to this size allocate nothing either.
  public init(
    losses: Bool = false,
    policyGradients: Bool = false,
    referenceGradients: Bool = false,
    rewards: Bool = false,
    capacity: Int = 0
  ) {
    func buffer(_ requested: Bool) -> [Double]? {
      guard requested else { return nil }
      var array: [Double] = []
      array.reserveCapacity(capacity)
      return array
    }
    self.losses = buffer(losses)
    policyChosenGradient = buffer(policyGradients)
    policyRejectedGradient = buffer(policyGradients)
    referenceChosenGradient = buffer(referenceGradients)
    referenceRejectedGradient = buffer(referenceGradients)
    chosenRewards = buffer(rewards)
    rejectedRewards = buffer(rewards)
  }

  /// Resizes every requested array to `count` elements, keeping capacity.
  mutating func resize(to count: Int) {
    Self.resize(&losses, to: count)
    Self.resize(&policyChosenGradient, to: count)
    Self.resize(&policyRejectedGradient, to: count)
    Self.resize(&referenceChosenGradient, to: count)
    Self.resize(&referenceRejectedGradient, to: count)
    Self.resize(&chosenRewards, to: count)
    Self.resize(&rejectedRewards, to: count)
  }

  private static func resize(_ array: inout [Double]?, to count: Int) {
    guard array != nil, array!.count != count else { return }
    if array!.count > count {
      array!.removeLast(array!.count - count)
    } else {
      array!.append(contentsOf: repeatElement(0, count: count - array!.count))
    }
  }

  /// Calls `body` with pointers to the requested arrays, `nil` for the
  /// others. The pointers are valid only during the call.
  mutating func withOutputPointers<Result>(
    _ body: (OutputPointers) -> Result
  ) -> Result {
    withOptionalPointer(&losses) { losses in
      withOptionalPointer(&policyChosenGradient) { policyChosen in
        withOptionalPointer(&policyRejectedGradient) { policyRejected in
          withOptionalPointer(&referenceChosenGradient) { referenceChosen in
            withOptionalPointer(&referenceRejectedGradient) {
              referenceRejected in
              withOptionalPointer(&chosenRewards) { chosenRewards in
                withOptionalPointer(&rejectedRewards) { rejectedRewards in
                  body(
                    OutputPointers(
                      losses: losses,
                      policyChosenGradient: policyChosen,
                      policyRejectedGradient: policyRejected,
                      referenceChosenGradient: referenceChosen,
                      referenceRejectedGradient: referenceRejected,
                      chosenRewards: chosenRewards,
                      rejectedRewards: rejectedRewards
                    )
                  )
                }
              }
            }
          }
        }
      }
    }
  }
}

private func withOptionalPointer<Result>(
  _ array: inout [Double]?,
  _ body: (UnsafeMutablePointer<Double>?) -> Result
) -> Result {
  guard array != nil else { return body(nil) }
  return array!.withUnsafeMutableBufferPointer { body($0.baseAddress) }
}

/// Pointers to the requested per-pair outputs of one batch; `nil` where not
/// requested.
struct OutputPointers {
  var losses: UnsafeMutablePointer<Double>?
  var policyChosenGradient: UnsafeMutablePointer<Double>?
  var policyRejectedGradient: UnsafeMutablePointer<Double>?
  var referenceChosenGradient: UnsafeMutablePointer<Double>?
  var referenceRejectedGradient: UnsafeMutablePointer<Double>?
  var chosenRewards: UnsafeMutablePointer<Double>?
  var rejectedRewards: UnsafeMutablePointer<Double>?

  var wantsGradient: Bool {
    policyChosenGradient != nil || policyRejectedGradient != nil
      || referenceChosenGradient != nil || referenceRejectedGradient != nil
  }

  /// Returns whether every requested output starts at a multiple of
  /// `alignment` bytes.
  func allAligned(to alignment: Int) -> Bool {
    func isAligned(_ pointer: UnsafeMutablePointer<Double>?) -> Bool {
      pointer.map { Int(bitPattern: $0) % alignment == 0 } ?? true
    }
    return isAligned(losses) && isAligned(policyChosenGradient)
      && isAligned(policyRejectedGradient)
      && isAligned(referenceChosenGradient)
      && isAligned(referenceRejectedGradient) && isAligned(chosenRewards)
      && isAligned(rejectedRewards)
  }

  @inline(always)
  func advanced(by offset: Int) -> OutputPointers {
    OutputPointers(
      losses: losses.map { $0 + offset },
      policyChosenGradient: policyChosenGradient.map { $0 + offset },
      policyRejectedGradient: policyRejectedGradient.map { $0 + offset },
      referenceChosenGradient: referenceChosenGradient.map { $0 + offset },
      referenceRejectedGradient: referenceRejectedGradient.map {
        $0 + offset
      },
      chosenRewards: chosenRewards.map { $0 + offset },
      rejectedRewards: rejectedRewards.map { $0 + offset }
    )
  }
}
