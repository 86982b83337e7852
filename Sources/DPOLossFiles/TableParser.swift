// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Glibc

/// A byte-level parser for the CSV and TSV files that `LogProbTable` reads.
///
/// The text must be followed in memory by a zero byte, because `strtod(3)`
/// reads until a byte that cannot continue a number.
struct TableParser {
  private let text: UnsafeRawBufferPointer
  private let path: String
  private let forcesTab: Bool

  /// The offset of the next line to read.
  private var lineStart = 0

  /// The 1-based number of the last line read.
  private var lineNumber = 0

  init(text: UnsafeRawBufferPointer, path: String, forcesTab: Bool) {
    self.text = text
    self.path = path
    self.forcesTab = forcesTab
  }

  /// Parses the header and the rows, and returns the four log-prob columns
  /// indexed by `LogProbColumn.rawValue`.
  mutating func parse() throws(LogProbTableError) -> [[Double]] {
    let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]
    if text.starts(with: byteOrderMark) {
      lineStart = byteOrderMark.count
    }

    guard let header = nextNonBlankLine() else {
      throw .missingHeader(path: path)
    }
    let tab = UInt8(ascii: "\t")
    let delimiter =
      forcesTab || text[header].contains(tab) ? tab : UInt8(ascii: ",")
    let names = splitFields(header, delimiter: delimiter).map {
      String(decoding: text[$0], as: UTF8.self)
    }
    let columnForField = try mapColumns(names)

    // The C locale guarantees '.' as the decimal separator even if the
    // program has called setlocale(3).
    let cLocale = newlocale(LC_NUMERIC_MASK, "C", nil)
    let previousLocale = cLocale.map { uselocale($0) }
    defer {
      if let cLocale, let previousLocale {
        uselocale(previousLocale)
        freelocale(cLocale)
      }
    }

    var columns = [[Double]](repeating: [], count: 4)
    var row = [Double](repeating: 0, count: 4)
    while let line = nextNonBlankLine() {
      try parseRow(
        line,
        delimiter: delimiter,
        columnForField: columnForField,
        names: names,
        into: &row
      )
      for column in 0..<4 {
        columns[column].append(row[column])
      }
    }
    guard !columns[0].isEmpty else {
      throw .noDataRows(path: path)
    }
    return columns
  }

  /// Returns the `LogProbColumn.rawValue` of each header field, or -1 for a
  /// field that is ignored.
  private func mapColumns(
    _ names: [String]
  ) throws(LogProbTableError) -> [Int] {
    var columnForField = [Int](repeating: -1, count: names.count)
    var fieldForColumn = [Int?](repeating: nil, count: 4)
    for (field, name) in names.enumerated() {
      guard let column = LogProbColumn(name: name) else {
        continue
      }
      if let earlier = fieldForColumn[column.rawValue] {
        throw .duplicateColumn(
          path: path,
          names: [names[earlier], name],
          columns: [earlier + 1, field + 1]
        )
      }
      fieldForColumn[column.rawValue] = field
      columnForField[field] = column.rawValue
    }

    let missing = LogProbColumn.allCases.filter {
      fieldForColumn[$0.rawValue] == nil
    }
    guard missing.isEmpty else {
      throw .missingColumns(
        path: path,
        missing: missing.map(\.standardName),
        header: names
      )
    }
    return columnForField
  }

  /// Parses one data row into `row`, indexed by `LogProbColumn.rawValue`.
  ///
  /// A wrong field count is reported before a bad cell, because a missing
  /// delimiter shifts every later field.
  private func parseRow(
    _ line: Range<Int>,
    delimiter: UInt8,
    columnForField: [Int],
    names: [String],
    into row: inout [Double]
  ) throws(LogProbTableError) {
    var fieldCount = 0
    var invalidField: (index: Int, range: Range<Int>)?
    var fieldStart = line.lowerBound
    while true {
      let fieldEnd = find(delimiter, in: fieldStart..<line.upperBound)
      let field = fieldCount
      fieldCount += 1
      if field < columnForField.count, columnForField[field] >= 0 {
        let range = trimField(fieldStart..<fieldEnd, delimiter: delimiter)
        if let value = parseNumber(range) {
          row[columnForField[field]] = value
        } else if invalidField == nil {
          invalidField = (field, range)
        }
      }
      if fieldEnd == line.upperBound {
        break
      }
      fieldStart = fieldEnd + 1
    }

    guard fieldCount == columnForField.count else {
      throw .raggedRow(
        path: path,
        line: lineNumber,
        expectedFields: columnForField.count,
        foundFields: fieldCount
      )
    }
    if let invalidField {
      throw .invalidNumber(
        path: path,
        line: lineNumber,
        column: invalidField.index + 1,
        columnName: names[invalidField.index],
        text: String(decoding: text[invalidField.range], as: UTF8.self)
      )
    }
  }

  /// Returns the next line that contains more than spaces, tabs and
  /// carriage returns, without its line end, and advances `lineNumber`.
  private mutating func nextNonBlankLine() -> Range<Int>? {
    while lineStart < text.count {
      lineNumber += 1
      let newline = find(UInt8(ascii: "\n"), in: lineStart..<text.count)
      var end = newline
      if end > lineStart && text[end - 1] == UInt8(ascii: "\r") {
        end -= 1
      }
      let line = lineStart..<end
      lineStart = newline + 1
      if text[line].contains(where: { !isWhitespace($0) }) {
        return line
      }
    }
    return nil
  }

  /// Returns the trimmed ranges of the fields in `line`.
  private func splitFields(
    _ line: Range<Int>,
    delimiter: UInt8
  ) -> [Range<Int>] {
    var fields: [Range<Int>] = []
    var fieldStart = line.lowerBound
    while true {
      let fieldEnd = find(delimiter, in: fieldStart..<line.upperBound)
      fields.append(trimField(fieldStart..<fieldEnd, delimiter: delimiter))
      if fieldEnd == line.upperBound {
        return fields
      }
      fieldStart = fieldEnd + 1
    }
  }

  /// Returns `field` without surrounding whitespace and one pair of
  /// surrounding double quotes. Tabs count as whitespace only when they do
  /// not separate fields.
  private func trimField(
    _ field: Range<Int>,
    delimiter: UInt8
  ) -> Range<Int> {
    var start = field.lowerBound
    var end = field.upperBound
    while start < end && isPadding(text[start], delimiter: delimiter) {
      start += 1
    }
    while end > start && isPadding(text[end - 1], delimiter: delimiter) {
      end -= 1
    }
    let quote = UInt8(ascii: "\"")
    if end - start >= 2 && text[start] == quote && text[end - 1] == quote {
      start += 1
      end -= 1
    }
    return start..<end
  }

  /// Parses a decimal number or a NaN or infinity word, or returns `nil`.
  private func parseNumber(_ field: Range<Int>) -> Double? {
    guard !field.isEmpty else {
      return nil
    }
    var start = field.lowerBound
    let isNegative = text[start] == UInt8(ascii: "-")
    if isNegative || text[start] == UInt8(ascii: "+") {
      start += 1
    }
    guard start < field.upperBound else {
      return nil
    }

    let first = text[start]
    let isLetter = (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(
      first | 0x20
    )
    if isLetter {
      let word = String(decoding: text[start..<field.upperBound], as: UTF8.self)
      // Negation sets the sign bit of NaN too, as float('-nan') does.
      switch word.lowercased() {
      case "nan": return isNegative ? -.nan : .nan
      case "inf", "infinity": return isNegative ? -.infinity : .infinity
      default: return nil
      }
    }

    // strtod(3) also accepts leading whitespace and hexadecimal floats such
    // as 0x1p-3, so require a digit or a point first and reject an x.
    let isDigit = first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")
    guard isDigit || first == UInt8(ascii: ".") else {
      return nil
    }
    if text[start..<field.upperBound].contains(where: { $0 | 0x20 == 0x78 }) {
      return nil
    }

    let base = text.baseAddress!.assumingMemoryBound(to: CChar.self)
    var parsedEnd: UnsafeMutablePointer<CChar>?
    let value = strtod(base + field.lowerBound, &parsedEnd)
    guard let parsedEnd, parsedEnd == base + field.upperBound else {
      return nil
    }
    return value
  }

  /// Returns the offset of the first `byte` in `range`, or its upper bound.
  private func find(_ byte: UInt8, in range: Range<Int>) -> Int {
    guard !range.isEmpty else {
      return range.upperBound
    }
    let start = text.baseAddress! + range.lowerBound
    guard let match = memchr(start, Int32(byte), range.count) else {
      return range.upperBound
    }
    return range.lowerBound
      + (UnsafeRawPointer(match) - UnsafeRawPointer(start))
  }

  private func isWhitespace(_ byte: UInt8) -> Bool {
    byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t")
      || byte == UInt8(ascii: "\r")
  }

  private func isPadding(_ byte: UInt8, delimiter: UInt8) -> Bool {
    byte == UInt8(ascii: " ")
      || (byte == UInt8(ascii: "\t") && delimiter != UInt8(ascii: "\t"))
  }
}
