// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// An error that `LogProbTable(contentsOf:)` throws for a CSV or TSV file
/// it cannot load. Line and column numbers start at 1.
public enum LogProbTableError: Error, Equatable, Sendable,
  CustomStringConvertible
{
  /// No file exists at the path.
  case notFound(path: String)

  /// The path exists but cannot be read: it is a directory or another
  /// non-regular file, or permission is denied.
  case unreadable(path: String, reason: String)

  /// The file is empty or contains only blank lines, so it has no header.
  case missingHeader(path: String)

  /// The header lacks one or more of the four log-prob columns. `missing`
  /// contains their standard names and `header` the names found.
  case missingColumns(path: String, missing: [String], header: [String])

  /// Two header fields name the same log-prob column, either with the same
  /// name or with a standard name and its TRL alias. `names[i]` is the name
  /// in column `columns[i]`.
  case duplicateColumn(path: String, names: [String], columns: [Int])

  /// A cell of a log-prob column is empty or not a number.
  case invalidNumber(
    path: String,
    line: Int,
    column: Int,
    columnName: String,
    text: String
  )

  /// A cell of a log-prob column is a hexadecimal float such as `0x1p3`.
  case hexadecimalNumber(
    path: String,
    line: Int,
    column: Int,
    columnName: String,
    text: String
  )

  /// A cell of a log-prob column is a finite decimal number, such as
  /// `1e400`, whose magnitude is too large for a `Double`.
  case numberOutOfRange(
    path: String,
    line: Int,
    column: Int,
    columnName: String,
    text: String
  )

  /// A field that starts with a double quote has no closing quote before
  /// the end of the file. `line` is the line where the field starts.
  case unterminatedQuote(path: String, line: Int, column: Int)

  /// A quoted field's closing quote is followed by more than spaces before
  /// the next delimiter or line end. `line` is the line of the closing
  /// quote.
  case textAfterClosingQuote(path: String, line: Int, column: Int)

  /// A data row has a different number of fields than the header. `line` is
  /// the line where the row starts.
  case raggedRow(path: String, line: Int, expectedFields: Int, foundFields: Int)

  /// The file has a header but no data rows.
  case noDataRows(path: String)

  /// The path of the file that failed to load.
  public var path: String {
    switch self {
    case .notFound(let path), .unreadable(let path, _),
      .missingHeader(let path), .missingColumns(let path, _, _),
      .duplicateColumn(let path, _, _), .invalidNumber(let path, _, _, _, _),
      .hexadecimalNumber(let path, _, _, _, _),
      .numberOutOfRange(let path, _, _, _, _),
      .unterminatedQuote(let path, _, _),
      .textAfterClosingQuote(let path, _, _), .raggedRow(let path, _, _, _),
      .noDataRows(let path):
      return path
    }
  }

  /// A message that names the file, the problem and the fix.
  public var description: String {
    switch self {
    case .notFound(let path):
      return "\(path): file not found. Check the path and the current "
        + "directory."
    case .unreadable(let path, let reason):
      return "\(path): cannot read the file (\(reason)). Pass a regular "
        + "CSV or TSV file that you have permission to read."
    case .missingHeader(let path):
      return "\(path): the file is empty, so it has no header line. The "
        + "first line must name the columns \(standardColumnList)."
    case .missingColumns(let path, let missing, let header):
      let missingList = missing.map { "'\($0)'" }.joined(separator: ", ")
      let headerList = header.map { "'\($0)'" }.joined(separator: ", ")
      let noun = missing.count == 1 ? "column" : "columns"
      return "\(path): missing \(noun) \(missingList). The header has "
        + "\(headerList). Name the columns \(standardColumnList), or use "
        + "TRL's names \(trlColumnList)."
    case .duplicateColumn(let path, let names, let columns):
      let columnList = columns.map(String.init).joined(separator: " and ")
      if Set(names).count == 1 {
        return "\(path): the header names column '\(names[0])' more than "
          + "once (columns \(columnList)). Remove or rename all but one."
      }
      let fields = zip(columns, names).map { "\($0) ('\($1)')" }
      return "\(path): columns \(fields.joined(separator: " and ")) name "
        + "the same log-probs. Remove or rename all but one."
    case .invalidNumber(let path, let line, let column, let name, let text):
      let location = "\(path):\(line): column \(column) ('\(name)')"
      if text.isEmpty {
        return "\(location) is empty. Fill in a number, or nan for a "
          + "missing value."
      }
      return "\(location) contains '\(shorten(text))', which is not a "
        + "number. Use a decimal number, nan, inf or -inf."
    case .hexadecimalNumber(let path, let line, let column, let name, let text):
      let location = "\(path):\(line): column \(column) ('\(name)')"
      return "\(location) contains the hexadecimal float "
        + "'\(shorten(text))'. Write it in decimal notation"
        + decimalExample(of: text) + "."
    case .numberOutOfRange(let path, let line, let column, let name, let text):
      let location = "\(path):\(line): column \(column) ('\(name)')"
      return "\(location) contains '\(shorten(text))', which is outside the "
        + "range of a double (largest magnitude "
        + "\(Double.greatestFiniteMagnitude)). Check the value, or write "
        + "inf or -inf for an infinite log-prob."
    case .unterminatedQuote(let path, let line, let column):
      return "\(path):\(line): column \(column) starts with a double quote "
        + "that is never closed. Close the quoted field, and write each "
        + "quote inside it as two quotes (\"\")."
    case .textAfterClosingQuote(let path, let line, let column):
      return "\(path):\(line): column \(column) has text after the closing "
        + "double quote of a quoted field. Quote the whole field, and write "
        + "each quote inside it as two quotes (\"\")."
    case .raggedRow(let path, let line, let expected, let found):
      return "\(path):\(line): the row has \(found) fields but the header "
        + "has \(expected). Check for a missing or extra delimiter."
    case .noDataRows(let path):
      return "\(path): the file has a header but no data rows. Add one row "
        + "per preference pair."
    }
  }
}

extension LogProbTableError {
  init(_ failure: ReadFailure, path: String) {
    switch failure {
    case .notFound:
      self = .notFound(path: path)
    case .unreadable(let reason):
      self = .unreadable(path: path, reason: reason)
    }
  }
}

private let standardColumnList = LogProbColumn.allCases
  .map { "'\($0.standardName)'" }.joined(separator: ", ")

private let trlColumnList = LogProbColumn.allCases
  .map { "'\($0.trlName)'" }.joined(separator: ", ")

/// Returns " (0x1p3 is 8.0)" for hexadecimal float text, or an empty
/// string if Swift's `Double(_:)` cannot read it as a finite value.
private func decimalExample(of text: String) -> String {
  guard let value = Double(text), value.isFinite else {
    return ""
  }
  return " (\(shorten(text)) is \(value))"
}

/// Returns `text` cut to 40 characters, so a long line stays readable.
private func shorten(_ text: String) -> String {
  text.count <= 40 ? text : text.prefix(37) + "..."
}
