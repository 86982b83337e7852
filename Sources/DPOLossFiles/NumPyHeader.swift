// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// A value of the Python literal subset that `.npy` headers contain.
indirect enum PythonLiteral {
  case string(String)
  case integer(Int)
  case boolean(Bool)
  case none
  case tuple([PythonLiteral])
  case list([PythonLiteral])

  /// The value as Python's `repr()` prints it, for error messages.
  var pythonRepresentation: String {
    switch self {
    case .string(let text):
      return "'\(text.escapedForPythonLiteral())'"
    case .integer(let value):
      return String(value)
    case .boolean(let value):
      return value ? "True" : "False"
    case .none:
      return "None"
    case .tuple(let items):
      let inner = items.map(\.pythonRepresentation).joined(separator: ", ")
      return items.count == 1 ? "(\(inner),)" : "(\(inner))"
    case .list(let items):
      let inner = items.map(\.pythonRepresentation).joined(separator: ", ")
      return "[\(inner)]"
    }
  }
}

extension String {
  /// Returns the text with backslashes, single quotes and control
  /// characters escaped as in Python's `repr()`, so that a message shows
  /// every character of a header string.
  fileprivate func escapedForPythonLiteral() -> String {
    var result = ""
    for scalar in unicodeScalars {
      switch scalar {
      case "\\", "'":
        result += "\\\(scalar)"
      case "\t":
        result += "\\t"
      case "\n":
        result += "\\n"
      case "\r":
        result += "\\r"
      case "\u{00}"..."\u{1F}", "\u{7F}"..."\u{9F}":
        let hex = String(scalar.value, radix: 16)
        result += "\\x" + (hex.count == 1 ? "0" : "") + hex
      default:
        result.unicodeScalars.append(scalar)
      }
    }
    return result
  }
}

/// A syntax or content problem in a `.npy` header, described in `reason`.
struct HeaderParseError: Error {
  var reason: String
}

/// The three entries of a `.npy` header dictionary.
struct NumPyHeader {
  /// The dtype descriptor: a string such as `'<f8'`, or a list for a
  /// structured dtype.
  var descr: PythonLiteral

  /// Whether the data is stored in Fortran (column-major) order.
  var fortranOrder: Bool

  /// The array shape, one non-negative length per dimension.
  var shape: [Int]

  /// Parses a header dictionary such as
  /// `{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }`.
  ///
  /// Keys may appear in any order. Whitespace, a trailing comma and the
  /// padding after the closing brace are allowed. The three keys must all
  /// appear and no other key may, as `numpy.load` in NumPy 2.4.6 requires.
  /// A repeated key, which `numpy.load` accepts (the last value wins), is
  /// rejected here as ambiguous.
  /// - Parameters:
  ///   - bytes: The header text after the length field.
  ///   - isUTF8: Whether strings are UTF-8 (format 3.0) rather than Latin-1.
  static func parse(
    _ bytes: UnsafeRawBufferPointer,
    isUTF8: Bool
  ) throws(HeaderParseError) -> NumPyHeader {
    var parser = PythonLiteralParser(bytes: bytes, isUTF8: isUTF8)
    let entries = try parser.parseDictionary()

    var values: [String: PythonLiteral] = [:]
    for (key, value) in entries {
      guard ["descr", "fortran_order", "shape"].contains(key) else {
        throw HeaderParseError(
          reason: "unexpected key '\(key)', but the only allowed keys are "
            + "'descr', 'fortran_order' and 'shape'"
        )
      }
      if values[key] != nil {
        throw HeaderParseError(reason: "key '\(key)' appears twice")
      }
      values[key] = value
    }
    for key in ["descr", "fortran_order", "shape"] where values[key] == nil {
      throw HeaderParseError(reason: "missing key '\(key)'")
    }

    let descr = values["descr"]!
    switch descr {
    case .string, .list:
      break
    default:
      throw HeaderParseError(
        reason: "'descr' is \(descr.pythonRepresentation), but it must be a "
          + "dtype string such as '<f8'"
      )
    }

    guard case .boolean(let fortranOrder) = values["fortran_order"]! else {
      let value = values["fortran_order"]!.pythonRepresentation
      throw HeaderParseError(
        reason: "'fortran_order' is \(value), but it must be True or False"
      )
    }

    let shapeValue = values["shape"]!
    var shape: [Int] = []
    if case .tuple(let items) = shapeValue {
      for item in items {
        guard case .integer(let length) = item, length >= 0 else {
          shape = []
          break
        }
        shape.append(length)
      }
      if shape.count == items.count {
        return NumPyHeader(
          descr: descr,
          fortranOrder: fortranOrder,
          shape: shape
        )
      }
    }
    throw HeaderParseError(
      reason: "'shape' is \(shapeValue.pythonRepresentation), but it must be "
        + "a tuple of non-negative integers such as (5,)"
    )
  }
}

/// A recursive-descent parser for the Python literals in `.npy` headers:
/// strings, integers, `True`, `False`, `None`, tuples, lists and one
/// dictionary with string keys at the top level.
struct PythonLiteralParser {
  private let bytes: UnsafeRawBufferPointer
  private let isUTF8: Bool
  private var position = 0

  private var depth = 0

  private static let digits = UInt8(ascii: "0")...UInt8(ascii: "9")

  /// The deepest nesting of brackets accepted. It bounds the recursion, and
  /// a dtype descriptor needs only a few levels.
  private static let maxDepth = 32

  /// A key and value of the top-level dictionary.
  typealias Entry = (key: String, value: PythonLiteral)

  init(bytes: UnsafeRawBufferPointer, isUTF8: Bool) {
    self.bytes = bytes
    self.isUTF8 = isUTF8
  }

  /// Parses the top-level dictionary and rejects anything after it but
  /// whitespace.
  mutating func parseDictionary() throws(HeaderParseError) -> [Entry] {
    skipWhitespace()
    guard peek() == UInt8(ascii: "{") else {
      throw error("the header is not a dictionary literal: expected '{'")
    }
    position += 1

    var entries: [Entry] = []
    while true {
      skipWhitespace()
      if peek() == UInt8(ascii: "}") {
        position += 1
        break
      }
      guard case .string(let key) = try parseValue() else {
        throw error("expected a quoted key")
      }
      skipWhitespace()
      guard peek() == UInt8(ascii: ":") else {
        throw error("expected ':' after the key '\(key)'")
      }
      position += 1
      let value = try parseValue()
      entries.append((key, value))

      skipWhitespace()
      if peek() == UInt8(ascii: ",") {
        position += 1
      } else if peek() != UInt8(ascii: "}") {
        throw error("expected ',' or '}' after the value of '\(key)'")
      }
    }

    skipWhitespace()
    if position < bytes.count {
      throw error("unexpected text after the closing '}'")
    }
    return entries
  }

  private mutating func parseValue() throws(HeaderParseError)
    -> PythonLiteral
  {
    skipWhitespace()
    guard let byte = peek() else {
      throw error("the header ends where a value was expected")
    }
    switch byte {
    case UInt8(ascii: "'"), UInt8(ascii: "\""):
      return .string(try parseString())
    case UInt8(ascii: "("):
      position += 1
      let (items, hasComma) = try parseSequence(closing: UInt8(ascii: ")"))
      // As in Python, (5) is the integer 5 and only (5,) is a tuple.
      if items.count == 1 && !hasComma {
        return items[0]
      }
      return .tuple(items)
    case UInt8(ascii: "["):
      position += 1
      return .list(try parseSequence(closing: UInt8(ascii: "]")).items)
    case UInt8(ascii: "-"), UInt8(ascii: "+"), Self.digits:
      return .integer(try parseInteger())
    default:
      let word = parseWord()
      switch word {
      case "True": return .boolean(true)
      case "False": return .boolean(false)
      case "None": return .none
      default:
        let unexpected = word.isEmpty ? String(Unicode.Scalar(byte)) : word
        throw error("unexpected '\(unexpected)'")
      }
    }
  }

  /// Parses items up to `closing`, which the opening bracket's caller has
  /// already consumed. `hasComma` distinguishes a one-item tuple from parentheses.
  private mutating func parseSequence(
    closing: UInt8
  ) throws(HeaderParseError) -> (items: [PythonLiteral], hasComma: Bool) {
    depth += 1
    defer { depth -= 1 }
    if depth > Self.maxDepth {
      throw error("brackets nest deeper than \(Self.maxDepth) levels")
    }

    var items: [PythonLiteral] = []
    var hasComma = false
    while true {
      skipWhitespace()
      if peek() == closing {
        position += 1
        return (items, hasComma)
      }
      items.append(try parseValue())
      skipWhitespace()
      if peek() == UInt8(ascii: ",") {
        hasComma = true
        position += 1
      } else if peek() != closing {
        throw error("expected ',' or '\(Unicode.Scalar(closing))'")
      }
    }
  }

  private mutating func parseString() throws(HeaderParseError) -> String {
    let quote = bytes[position]
    position += 1
    var content: [UInt8] = []
    while true {
      guard let byte = peek() else {
        throw error("a string is missing its closing quote")
      }
      position += 1
      if byte == quote {
        break
      }
      // An escape keeps the next byte as it is, so \' and \\ work but \n
      // becomes n. Header strings from NumPy contain no other escapes.
      if byte == UInt8(ascii: "\\") {
        guard let escaped = peek() else {
          throw error("a string is missing its closing quote")
        }
        position += 1
        content.append(escaped)
        continue
      }
      content.append(byte)
    }
    if isUTF8 {
      return String(decoding: content, as: UTF8.self)
    }
    // Latin-1 maps each byte to the code point of the same value.
    var text = ""
    text.unicodeScalars.append(
      contentsOf: content.map { Unicode.Scalar($0) }
    )
    return text
  }

  private mutating func parseInteger() throws(HeaderParseError) -> Int {
    var isNegative = false
    if peek() == UInt8(ascii: "-") || peek() == UInt8(ascii: "+") {
      isNegative = peek() == UInt8(ascii: "-")
      position += 1
      skipWhitespace()
    }
    var value = 0
    var digitCount = 0
    while let byte = peek(), Self.digits.contains(byte) {
      let (product, productOverflow) = value.multipliedReportingOverflow(
        by: 10
      )
      let (sum, sumOverflow) = product.addingReportingOverflow(
        Int(byte - UInt8(ascii: "0"))
      )
      if productOverflow || sumOverflow {
        throw error("an integer is too large")
      }
      value = sum
      digitCount += 1
      position += 1
    }
    if digitCount == 0 {
      throw error("expected digits after the sign")
    }
    // Python 2 wrote long integers with an L suffix, as in (5L,).
    if peek() == UInt8(ascii: "L") || peek() == UInt8(ascii: "l") {
      position += 1
    }
    return isNegative ? -value : value
  }

  private mutating func parseWord() -> String {
    let start = position
    while let byte = peek(),
      (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
        || byte == UInt8(ascii: "_")
    {
      position += 1
    }
    return String(decoding: bytes[start..<position], as: UTF8.self)
  }

  private mutating func skipWhitespace() {
    while let byte = peek(),
      byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n")
        || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
        || byte == 0x0C
    {
      position += 1
    }
  }

  private func peek() -> UInt8? {
    position < bytes.count ? bytes[position] : nil
  }

  private func error(_ problem: String) -> HeaderParseError {
    HeaderParseError(reason: "\(problem) at byte \(position) of the header")
  }
}
