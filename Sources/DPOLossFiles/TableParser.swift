// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// A byte-level parser for the CSV and TSV files that `LogProbTable` reads.
///
/// Fields follow RFC 4180. A field that starts with a double quote, after
/// optional padding, ends at the next double quote that is not doubled,
/// and may contain the delimiter, line breaks and doubled quotes (`""` is
/// one quote). Line numbers count physical lines, so a line break inside a
/// quoted field moves later rows to later lines.
///
/// The text must be followed in memory by a zero byte, because `strtod(3)`
/// reads until a byte that cannot continue a number.
struct TableParser {
  /// One field of a record.
  private struct Field {
    /// The field's bytes without padding and enclosing quotes. A doubled
    /// quote inside a quoted field is still two bytes here.
    var content: Range<Int>

    /// Whether `content` contains doubled quotes that stand for one quote.
    var hasDoubledQuotes: Bool

    /// The line where the field starts.
    var line: Int

    /// Whether a line end or the end of the text follows the field.
    var endsRecord: Bool
  }

  private let text: UnsafeRawBufferPointer
  private let path: String
  private let forcesTab: Bool
  private var delimiter = UInt8(ascii: ",")

  /// The offset of the next byte to read.
  private var position = 0

  /// The 1-based number of the line that contains `position`.
  private var lineNumber = 1

  private static let quote = UInt8(ascii: "\"")
  private static let lineFeed = UInt8(ascii: "\n")
  private static let carriageReturn = UInt8(ascii: "\r")
  private static let tab = UInt8(ascii: "\t")
  private static let space = UInt8(ascii: " ")

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
      position = byteOrderMark.count
    }

    guard skipBlankLines() else {
      throw .missingHeader(path: path)
    }
    if forcesTab || lineContainsTab(from: position) {
      delimiter = Self.tab
    }
    let names = try parseHeader()
    let columnForField = try mapColumns(names)

    var columns = [[Double]](repeating: [], count: 4)
    var row = [Double](repeating: 0, count: 4)
    try withCNumericLocale { () throws(LogProbTableError) in
      while skipBlankLines() {
        try parseRow(columnForField: columnForField, names: names, into: &row)
        for column in 0..<4 {
          columns[column].append(row[column])
        }
      }
    }
    guard !columns[0].isEmpty else {
      throw .noDataRows(path: path)
    }
    return columns
  }

  /// Reads the header record and returns its field names.
  private mutating func parseHeader() throws(LogProbTableError) -> [String] {
    var names: [String] = []
    while true {
      let field = try nextField(column: names.count + 1)
      names.append(fieldText(field))
      if field.endsRecord {
        return names
      }
    }
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

  /// Parses one data record into `row`, indexed by `LogProbColumn.rawValue`.
  ///
  /// A wrong field count is reported before a bad cell, because a missing
  /// delimiter shifts every later field. A quoting error is reported at
  /// once, because the rest of the record cannot be split.
  private mutating func parseRow(
    columnForField: [Int],
    names: [String],
    into row: inout [Double]
  ) throws(LogProbTableError) {
    let recordLine = lineNumber
    var fieldCount = 0
    var invalid: (field: Field, index: Int, problem: NumberTextError)?
    while true {
      let field = try nextField(column: fieldCount + 1)
      if fieldCount < columnForField.count, columnForField[fieldCount] >= 0 {
        switch parseNumber(in: text, field: field.content) {
        case .success(let value):
          row[columnForField[fieldCount]] = value
        case .failure(let problem):
          if invalid == nil {
            invalid = (field, fieldCount, problem)
          }
        }
      }
      fieldCount += 1
      if field.endsRecord {
        break
      }
    }

    guard fieldCount == columnForField.count else {
      throw .raggedRow(
        path: path,
        line: recordLine,
        expectedFields: columnForField.count,
        foundFields: fieldCount
      )
    }
    if let invalid {
      throw numberError(
        invalid.problem,
        line: invalid.field.line,
        column: invalid.index + 1,
        columnName: names[invalid.index],
        text: fieldText(invalid.field)
      )
    }
  }

  private func numberError(
    _ problem: NumberTextError,
    line: Int,
    column: Int,
    columnName: String,
    text: String
  ) -> LogProbTableError {
    switch problem {
    case .notANumber:
      .invalidNumber(
        path: path,
        line: line,
        column: column,
        columnName: columnName,
        text: text
      )
    case .hexadecimal:
      .hexadecimalNumber(
        path: path,
        line: line,
        column: column,
        columnName: columnName,
        text: text
      )
    case .outOfRange:
      .numberOutOfRange(
        path: path,
        line: line,
        column: column,
        columnName: columnName,
        text: text
      )
    }
  }

  /// Reads the field at `position` and the delimiter or line end after it.
  /// `column` is the field's 1-based index, for error messages.
  private mutating func nextField(
    column: Int
  ) throws(LogProbTableError) -> Field {
    let startLine = lineNumber
    skipPadding()
    if position < text.count && text[position] == Self.quote {
      return try nextQuotedField(column: column, startLine: startLine)
    }

    let start = position
    while position < text.count {
      let byte = text[position]
      if byte == delimiter || byte == Self.lineFeed {
        break
      }
      position += 1
    }
    var end = position
    // A carriage return before the line end belongs to the line end.
    if end > start && text[end - 1] == Self.carriageReturn
      && (end == text.count || text[end] == Self.lineFeed)
    {
      end -= 1
    }
    while end > start && isPadding(text[end - 1]) {
      end -= 1
    }
    return Field(
      content: start..<end,
      hasDoubledQuotes: false,
      line: startLine,
      endsRecord: consumeFieldEnd()
    )
  }

  /// Reads a quoted field whose opening quote is at `position`.
  private mutating func nextQuotedField(
    column: Int,
    startLine: Int
  ) throws(LogProbTableError) -> Field {
    position += 1
    let start = position
    var hasDoubledQuotes = false
    while true {
      guard position < text.count else {
        throw .unterminatedQuote(path: path, line: startLine, column: column)
      }
      let byte = text[position]
      position += 1
      if byte == Self.lineFeed {
        lineNumber += 1
      } else if byte == Self.quote {
        if position < text.count && text[position] == Self.quote {
          hasDoubledQuotes = true
          position += 1
        } else {
          break
        }
      }
    }
    let end = position - 1

    // Only padding, and a carriage return before a line end, may follow the
    // closing quote.
    skipPadding()
    if position < text.count && text[position] == Self.carriageReturn
      && (position + 1 == text.count || text[position + 1] == Self.lineFeed)
    {
      position += 1
    }
    if position < text.count && text[position] != delimiter
      && text[position] != Self.lineFeed
    {
      throw .textAfterClosingQuote(
        path: path,
        line: lineNumber,
        column: column
      )
    }
    return Field(
      content: start..<end,
      hasDoubledQuotes: hasDoubledQuotes,
      line: startLine,
      endsRecord: consumeFieldEnd()
    )
  }

  /// Consumes the delimiter or line feed at `position`, if any, and returns
  /// whether the record ends there.
  private mutating func consumeFieldEnd() -> Bool {
    guard position < text.count else {
      return true
    }
    let byte = text[position]
    position += 1
    if byte == Self.lineFeed {
      lineNumber += 1
      return true
    }
    return false
  }

  /// Returns the text of `field`, with each doubled quote made single.
  private func fieldText(_ field: Field) -> String {
    let bytes = text[field.content]
    guard field.hasDoubledQuotes else {
      return String(decoding: bytes, as: UTF8.self)
    }
    var unescaped: [UInt8] = []
    unescaped.reserveCapacity(bytes.count)
    var previousWasQuote = false
    for byte in bytes {
      if byte == Self.quote && previousWasQuote {
        previousWasQuote = false
        continue
      }
      previousWasQuote = byte == Self.quote
      unescaped.append(byte)
    }
    return String(decoding: unescaped, as: UTF8.self)
  }

  /// Skips lines that contain only spaces, tabs and carriage returns, and
  /// returns whether a record follows.
  private mutating func skipBlankLines() -> Bool {
    var scan = position
    while scan < text.count {
      let byte = text[scan]
      if byte == Self.lineFeed {
        lineNumber += 1
        position = scan + 1
      } else if byte != Self.space && byte != Self.tab
        && byte != Self.carriageReturn
      {
        return true
      }
      scan += 1
    }
    position = text.count
    return false
  }

  /// Returns whether the line that contains `offset` has a tab at or after
  /// `offset`.
  private func lineContainsTab(from offset: Int) -> Bool {
    for byte in text[offset...] {
      if byte == Self.lineFeed {
        return false
      }
      if byte == Self.tab {
        return true
      }
    }
    return false
  }

  private mutating func skipPadding() {
    while position < text.count && isPadding(text[position]) {
      position += 1
    }
  }

  /// Returns whether `byte` is padding around a field: a space, or a tab
  /// when tabs do not separate fields.
  private func isPadding(_ byte: UInt8) -> Bool {
    byte == Self.space || (byte == Self.tab && delimiter != Self.tab)
  }
}
