// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossFiles
import Foundation

/// Builds `.npy` file bytes by hand: the magic string, `version`, the
/// header length field and `header`, then `data`.
///
/// When `alignment` is given, `header` is padded with spaces and a newline
/// so that the data starts at a multiple of `alignment`. Otherwise `header`
/// is used as is.
func makeNPY(
  header: String,
  version: (major: UInt8, minor: UInt8) = (1, 0),
  data: [UInt8] = [],
  alignment: Int? = 64
) -> [UInt8] {
  let lengthFieldSize = version.major == 1 ? 2 : 4
  var headerBytes = Array(header.utf8)
  if let alignment {
    let unpadded = 8 + lengthFieldSize + headerBytes.count + 1
    let padding = (alignment - unpadded % alignment) % alignment
    headerBytes += [UInt8](repeating: 0x20, count: padding) + [0x0A]
  }

  var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8)
  bytes += [version.major, version.minor]
  for index in 0..<lengthFieldSize {
    bytes.append(UInt8(truncatingIfNeeded: headerBytes.count >> (8 * index)))
  }
  return bytes + headerBytes + data
}

/// Returns the header dictionary that NumPy writes for a 1-D array.
func npyDictionary(descr: String, count: Int) -> String {
  "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(count),), }"
}

/// Returns the little-endian bytes of `values` as float64.
func float64Bytes(_ values: [Double]) -> [UInt8] {
  values.flatMap { value in
    withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) }
  }
}

/// Returns the little-endian bytes of `values` as float32.
func float32Bytes(_ values: [Float]) -> [UInt8] {
  values.flatMap { value in
    withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) }
  }
}

/// Returns a copy of the values of `array`.
func values(of array: NumPyArray) -> [Double] {
  array.withSpan { span in
    (0..<span.count).map { span[$0] }
  }
}

/// Returns the bit patterns of `values`, so NaN compares equal to itself.
func bitPatterns(_ values: [Double]) -> [UInt64] {
  values.map(\.bitPattern)
}

/// Returns a description of the first element where `actual` and `expected`
/// differ, or `nil` if they match. Values match if their bit patterns are
/// equal or both are NaN, so -0.0 differs from 0.0 but NaN signs are
/// ignored.
func firstMismatch(_ actual: [Double], _ expected: [Double]) -> String? {
  guard actual.count == expected.count else {
    return "count \(actual.count), expected \(expected.count)"
  }
  for (index, (value, wanted)) in zip(actual, expected).enumerated() {
    let bothNaN = value.isNaN && wanted.isNaN
    if !bothNaN && value.bitPattern != wanted.bitPattern {
      return "index \(index): \(value), expected \(wanted)"
    }
  }
  return nil
}

/// Values that stress exact storage: signed zeros, extremes, subnormals,
/// infinities and NaN.
let specialDoubles: [Double] = [
  0.0, -0.0, 1.0, -1.5, 0.1, -141.30167279770984, 1e-300,
  .leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude,
  -.greatestFiniteMagnitude, .infinity, -.infinity, .nan, .pi, .ulpOfOne,
]

/// Returns `count` repeatable pseudo-random log-prob-like values in
/// (-200, 0), using a SplitMix64 generator seeded with `seed`.
func pseudoRandomLogProbs(count: Int, seed: UInt64) -> [Double] {
  var state = seed
  return (0..<count).map { _ in
    state &+= 0x9E37_79B9_7F4A_7C15
    var mixed = state
    mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
    mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
    mixed ^= mixed >> 31
    let unit = Double(mixed >> 11) * 0x1p-53
    return -200 * unit - 0x1p-20
  }
}
