// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Glibc

/// The reason that `parseDecimalNumber(_:)` rejects a text.
public enum NumberTextError: Error, Equatable, Sendable {
  /// The text is empty, or neither a decimal number nor one of the words
  /// `nan`, `inf` and `infinity`.
  case notANumber

  /// The text is a hexadecimal float such as `0x1p-3`.
  case hexadecimal

  /// The text is a finite decimal number, such as `1e400`, whose magnitude
  /// rounds to infinity because it exceeds `Double.greatestFiniteMagnitude`
  /// by at least half an ulp.
  case outOfRange
}

/// Parses a decimal floating-point number or a NaN or infinity word.
///
/// The text is an optional sign and either decimal digits with an optional
/// point and exponent, as in `-1.5`, `.5`, `5.` and `2.5e-3`, or one of the
/// words `nan`, `inf` and `infinity` in any capitalization. `-nan` sets the
/// sign bit of NaN, as Python's `float('-nan')` does. The value is rounded
/// to nearest by `strtod(3)` in the C locale, so `.` is the decimal point
/// whatever the process locale. Text below the smallest subnormal, such as
/// `1e-400`, becomes 0 or a subnormal and is accepted.
///
/// - Parameter text: The text, without surrounding whitespace.
/// - Returns: The value.
/// - Throws: `NumberTextError.hexadecimal` for a hexadecimal float,
///   `.outOfRange` for finite text whose value rounds to infinity, and
///   `.notANumber` for anything else that is not accepted, including
///   whitespace, digit separators and `nan(...)` payloads.
/// - Complexity: O(n) time, where n is the length of `text`, and one copy
///   of its UTF-8 bytes.
public func parseDecimalNumber(_ text: String) throws(NumberTextError)
  -> Double
{
  // The zero byte stops strtod(3) at the end of the text.
  let bytes = Array(text.utf8) + [0]
  let result = bytes.withUnsafeBytes { buffer in
    withCNumericLocale {
      parseNumber(in: buffer, field: 0..<(buffer.count - 1))
    }
  }
  return try result.get()
}

/// Parses the number in `field`, a range of `text`, as
/// `parseDecimalNumber(_:)` describes.
///
/// The caller must run this inside `withCNumericLocale(_:)`, and the byte
/// after `field` must not be able to continue a number (a delimiter, a
/// quote, a line break or a zero byte), because `strtod(3)` reads until it
/// finds such a byte.
func parseNumber(
  in text: UnsafeRawBufferPointer,
  field: Range<Int>
) -> Result<Double, NumberTextError> {
  guard !field.isEmpty else {
    return .failure(.notANumber)
  }
  var start = field.lowerBound
  let isNegative = text[start] == UInt8(ascii: "-")
  if isNegative || text[start] == UInt8(ascii: "+") {
    start += 1
  }
  guard start < field.upperBound else {
    return .failure(.notANumber)
  }

  let first = text[start]
  if isASCIILetter(first) {
    let word = UnsafeRawBufferPointer(rebasing: text[start..<field.upperBound])
    // Negation sets the sign bit of NaN too.
    if matchesIgnoringCase(word, "nan") {
      return .success(isNegative ? -.nan : .nan)
    }
    if matchesIgnoringCase(word, "inf")
      || matchesIgnoringCase(word, "infinity")
    {
      return .success(isNegative ? -.infinity : .infinity)
    }
    return .failure(.notANumber)
  }

  // strtod(3) also accepts leading whitespace and hexadecimal floats, so
  // require a digit or a point first and reject a 0x prefix.
  let isDigit = first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")
  guard isDigit || first == UInt8(ascii: ".") else {
    return .failure(.notANumber)
  }
  if first == UInt8(ascii: "0"), start + 1 < field.upperBound,
    text[start + 1] | 0x20 == UInt8(ascii: "x")
  {
    return .failure(.hexadecimal)
  }

  let base = text.baseAddress!.assumingMemoryBound(to: CChar.self)
  var parsedEnd: UnsafeMutablePointer<CChar>?
  let value = strtod(base + field.lowerBound, &parsedEnd)
  guard let parsedEnd, parsedEnd == base + field.upperBound else {
    return .failure(.notANumber)
  }
  // The text is digits here, so an infinite result is an overflow.
  guard value.isFinite else {
    return .failure(.outOfRange)
  }
  return .success(value)
}

/// Calls `body` with the C locale selected for numbers on this thread, so
/// that `strtod(3)` reads `.` as the decimal point even if the program has
/// called `setlocale(3)`, and restores the previous locale after it.
func withCNumericLocale<Result, Failure: Error>(
  _ body: () throws(Failure) -> Result
) throws(Failure) -> Result {
  let cLocale = newlocale(LC_NUMERIC_MASK, "C", nil)
  let previousLocale = cLocale.map { uselocale($0) }
  defer {
    if let cLocale, let previousLocale {
      uselocale(previousLocale)
      freelocale(cLocale)
    }
  }
  return try body()
}

/// Returns whether `byte` is an ASCII letter.
func isASCIILetter(_ byte: UInt8) -> Bool {
  (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
}

/// Returns whether `bytes` spell `word`, which is lowercase ASCII, in any
/// capitalization.
private func matchesIgnoringCase(
  _ bytes: UnsafeRawBufferPointer,
  _ word: StaticString
) -> Bool {
  guard bytes.count == word.utf8CodeUnitCount else {
    return false
  }
  let letters = UnsafeBufferPointer(
    start: word.utf8Start,
    count: word.utf8CodeUnitCount
  )
  return zip(bytes, letters).allSatisfy { $0 | 0x20 == $1 }
}
