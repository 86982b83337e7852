// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Testing

@testable import DPOLoss

/// Values that stress IEEE 754 subtraction: signed zeros, subnormals,
/// overflow (`max - -max`), infinities (`inf - inf` is NaN) and NaN.
private let extremeValues: [Double] = [
  0, -0.0, 1, -1, 0.1, -745.5, -1e300, 1e308,
  .leastNonzeroMagnitude, -.leastNonzeroMagnitude,
  .leastNormalMagnitude, -.leastNormalMagnitude,
  .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
  .infinity, -.infinity, .nan, -.nan,
]

/// Draws a log-prob: an extreme value, a random bit pattern or a typical
/// sequence log-prob, with equal odds.
private func randomInput(using generator: inout SplitMix64) -> Double {
  switch generator.next() % 3 {
  case 0:
    return extremeValues.randomElement(using: &generator)!
  case 1:
    return Double(bitPattern: generator.next())
  default:
    return Double.random(in: -1000 ... -1, using: &generator)
  }
}

/// Returns whether two doubles are the same bit pattern, or both NaN. IEEE
/// 754 does not fix the payload of a NaN result.
private func isSameValue(_ a: Double, _ b: Double) -> Bool {
  a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN)
}

/// A value `blasDelta` must not write past the end of its outputs.
private let sentinel = Double(bitPattern: 0x7FF4_DEAD_BEEF_0001)

@Test(arguments: 1...chunkLength)
func blasDeltaMatchesScalarDelta(count: Int) {
  var generator = SplitMix64(seed: 0xB1A5_DE17 &+ UInt64(count))
  var inputs: [[Double]] = []
  for _ in 0..<4 {
    inputs.append((0..<count).map { _ in randomInput(using: &generator) })
  }
  // Full chunk buffers, as the kernel passes them, filled past `count` with
  // the sentinel.
  var chosen = [Double](repeating: sentinel, count: chunkLength)
  var rejected = [Double](repeating: sentinel, count: chunkLength)

  inputs[0].withUnsafeBufferPointer { policyChosen in
    inputs[1].withUnsafeBufferPointer { policyRejected in
      inputs[2].withUnsafeBufferPointer { referenceChosen in
        inputs[3].withUnsafeBufferPointer { referenceRejected in
          chosen.withUnsafeMutableBufferPointer { chosen in
            rejected.withUnsafeMutableBufferPointer { rejected in
              blasDelta(
                count,
                policyChosen: policyChosen.baseAddress!,
                policyRejected: policyRejected.baseAddress!,
                referenceChosen: referenceChosen.baseAddress!,
                referenceRejected: referenceRejected.baseAddress!,
                chosen: chosen.baseAddress!,
                rejected: rejected.baseAddress!
              )
            }
          }
        }
      }
    }
  }

  var deltaMismatches: [String] = []
  var rejectedMismatches: [String] = []
  for i in 0..<count {
    let expected = dpoDelta(
      policyChosen: inputs[0][i],
      policyRejected: inputs[1][i],
      referenceChosen: inputs[2][i],
      referenceRejected: inputs[3][i]
    )
    let input =
      "pc \(inputs[0][i]), pr \(inputs[1][i]), rc \(inputs[2][i]), "
      + "rr \(inputs[3][i])"
    if !isSameValue(chosen[i], expected) {
      deltaMismatches.append(
        "[\(i)] \(input): expected \(expected), observed \(chosen[i])"
      )
    }
    let expectedRejected = inputs[1][i] - inputs[3][i]
    if !isSameValue(rejected[i], expectedRejected) {
      rejectedMismatches.append(
        "[\(i)] \(input): expected \(expectedRejected), observed "
          + "\(rejected[i])"
      )
    }
  }
  #expect(
    deltaMismatches.isEmpty,
    """
    count \(count): \(deltaMismatches.count) deltas differ from dpoDelta, \
    first: \(deltaMismatches.prefix(3))
    """
  )
  #expect(
    rejectedMismatches.isEmpty,
    """
    count \(count): \(rejectedMismatches.count) values of pr - rr differ, \
    first: \(rejectedMismatches.prefix(3))
    """
  )

  let writtenPastEnd = (count..<chunkLength).filter {
    chosen[$0].bitPattern != sentinel.bitPattern
      || rejected[$0].bitPattern != sentinel.bitPattern
  }
  #expect(
    writtenPastEnd.isEmpty,
    """
    count \(count): expected no writes past the end, observed writes at \
    \(writtenPastEnd.prefix(5))
    """
  )
}
