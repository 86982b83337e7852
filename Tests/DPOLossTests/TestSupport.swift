// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLoss
import Glibc

/// SplitMix64, a small seeded generator, so every random test input is the
/// same on every run.
struct SplitMix64: RandomNumberGenerator {
  private var state: UInt64

  init(seed: UInt64) {
    state = seed
  }

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// The four log-prob arrays of one batch of preference pairs.
struct Batch: CustomStringConvertible {
  var policyChosen: [Double]
  var policyRejected: [Double]
  var referenceChosen: [Double]
  var referenceRejected: [Double]

  var count: Int { policyChosen.count }

  var description: String {
    if count > 4 {
      return "batch of \(count) pairs"
    }
    return "pc \(policyChosen), pr \(policyRejected), "
      + "rc \(referenceChosen), rr \(referenceRejected)"
  }

  /// Makes a batch of one pair.
  static func pair(
    _ policyChosen: Double,
    _ policyRejected: Double,
    _ referenceChosen: Double,
    _ referenceRejected: Double
  ) -> Batch {
    Batch(
      policyChosen: [policyChosen],
      policyRejected: [policyRejected],
      referenceChosen: [referenceChosen],
      referenceRejected: [referenceRejected]
    )
  }

  /// Makes `count` pairs with sequence log-probs in `-1000...-1` and
  /// policy-reference differences within `±spread`, as in DPO training.
  static func random(
    count: Int,
    spread: Double = 20,
    using generator: inout SplitMix64
  ) -> Batch {
    var batch = Batch(
      policyChosen: [],
      policyRejected: [],
      referenceChosen: [],
      referenceRejected: []
    )
    for _ in 0..<count {
      let chosen = Double.random(in: -1000 ... -1, using: &generator)
      let rejected = Double.random(in: -1000 ... -1, using: &generator)
      batch.referenceChosen.append(chosen)
      batch.referenceRejected.append(rejected)
      batch.policyChosen.append(
        chosen + Double.random(in: -spread...spread, using: &generator)
      )
      batch.policyRejected.append(
        rejected + Double.random(in: -spread...spread, using: &generator)
      )
    }
    return batch
  }

  /// Computes the margin `(pc - rc) - (pr - rr)` of pair `index`.
  func delta(at index: Int) -> Double {
    dpoDelta(
      policyChosen: policyChosen[index],
      policyRejected: policyRejected[index],
      referenceChosen: referenceChosen[index],
      referenceRejected: referenceRejected[index]
    )
  }

  /// Returns a copy without pair `index`.
  func removing(at index: Int) -> Batch {
    var copy = self
    copy.policyChosen.remove(at: index)
    copy.policyRejected.remove(at: index)
    copy.referenceChosen.remove(at: index)
    copy.referenceRejected.remove(at: index)
    return copy
  }

  /// Returns a copy with `value` written into one of the four arrays.
  func setting(
    _ value: Double,
    in array: LogProbArray,
    at index: Int
  ) -> Batch {
    var copy = self
    switch array {
    case .policyChosen: copy.policyChosen[index] = value
    case .policyRejected: copy.policyRejected[index] = value
    case .referenceChosen: copy.referenceChosen[index] = value
    case .referenceRejected: copy.referenceRejected[index] = value
    }
    return copy
  }
}

/// One of the four inputs of the loss.
enum LogProbArray: String, CaseIterable, CustomStringConvertible {
  case policyChosen
  case policyRejected
  case referenceChosen
  case referenceRejected

  var description: String { rawValue }
}

/// A way to compute the batch loss: the kernel with either delta strategy,
/// or the scalar reference.
enum LossImplementation: CaseIterable, CustomStringConvertible {
  case kernel(DeltaStrategy)
  case reference

  static var allCases: [LossImplementation] {
    DeltaStrategy.allCases.map { .kernel($0) } + [.reference]
  }

  var description: String {
    switch self {
    case .kernel(let strategy): "kernel (\(strategy))"
    case .reference: "reference"
    }
  }

  /// Computes the mean loss of `batch` through the `[Double]` overloads.
  func loss(_ batch: Batch, beta: Double = 0.1) throws(DPOLossError)
    -> Double
  {
    switch self {
    case .kernel(let strategy):
      try dpoLoss(
        policyChosen: batch.policyChosen,
        policyRejected: batch.policyRejected,
        referenceChosen: batch.referenceChosen,
        referenceRejected: batch.referenceRejected,
        beta: beta,
        strategy: strategy
      )
    case .reference:
      try referenceDPOLoss(
        policyChosen: batch.policyChosen,
        policyRejected: batch.policyRejected,
        referenceChosen: batch.referenceChosen,
        referenceRejected: batch.referenceRejected,
        beta: beta
      )
    }
  }
}

/// Returns `|a - b| / max(|a|, |b|)`: 0 when `a == b` (including equal
/// infinities and signed zeros) or both are NaN, and infinity when they
/// differ and either is NaN or infinite.
func relativeDifference(_ a: Double, _ b: Double) -> Double {
  if a == b || (a.isNaN && b.isNaN) {
    return 0
  }
  if !a.isFinite || !b.isFinite {
    return .infinity
  }
  return abs(a - b) / max(abs(a), abs(b))
}

/// Returns `log(1 + exp(x))` in 64-bit-significand `Float80`, computed as
/// `max(x, 0) + log1p(exp(-|x|))` with Glibc's `log1pl` and `expl`.
func softplusFloat80(_ x: Double) -> Float80 {
  let wide = Float80(x)
  if wide.isNaN {
    return wide
  }
  return max(wide, 0) + log1pl(expl(-abs(wide)))
}

/// Returns the error of `observed` in units in the last place of the
/// correctly rounded `exact`. The unit is the `ulp` of `exact` rounded to
/// `Double`, and `Double.leastNonzeroMagnitude` for zero and subnormal
/// results. Matching infinities and NaNs give 0, and a mismatch gives
/// infinity.
func ulpError(observed: Double, exact: Float80) -> Double {
  if observed.isNaN || exact.isNaN {
    return observed.isNaN && exact.isNaN ? 0 : .infinity
  }
  let rounded = Double(exact)
  if rounded.isInfinite || observed.isInfinite {
    return observed == rounded ? 0 : .infinity
  }
  let unit = max(rounded.ulp, Double.leastNonzeroMagnitude)
  return Double(abs(Float80(observed) - exact) / Float80(unit))
}

/// The largest error seen over a sweep, with the argument that caused it.
struct MaximumError: CustomStringConvertible {
  var error: Double = 0
  var argument: Double = 0
  var expected: Float80 = 0
  var observed: Double = 0

  var description: String {
    "max error \(error) ulp at argument \(argument) "
      + "(\(argument.bitPattern.hexadecimal)): expected \(expected), "
      + "observed \(observed)"
  }

  mutating func record(argument: Double, exact: Float80, observed: Double) {
    let error = ulpError(observed: observed, exact: exact)
    if error > self.error {
      self = MaximumError(
        error: error,
        argument: argument,
        expected: exact,
        observed: observed
      )
    }
  }
}

extension UInt64 {
  var hexadecimal: String { "0x" + String(self, radix: 16) }
}
