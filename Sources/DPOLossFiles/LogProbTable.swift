// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Glibc

/// One of the four log-prob columns of a `LogProbTable` file.
enum LogProbColumn: Int, CaseIterable {
  case policyChosen
  case policyRejected
  case referenceChosen
  case referenceRejected

  /// The name this project uses, such as `policy_chosen`.
  var standardName: String {
    switch self {
    case .policyChosen: "policy_chosen"
    case .policyRejected: "policy_rejected"
    case .referenceChosen: "reference_chosen"
    case .referenceRejected: "reference_rejected"
    }
  }

  /// The name that TRL's `DPOTrainer` logs, such as `chosen_logps`.
  var trlName: String {
    switch self {
    case .policyChosen: "chosen_logps"
    case .policyRejected: "rejected_logps"
    case .referenceChosen: "ref_chosen_logps"
    case .referenceRejected: "ref_rejected_logps"
    }
  }

  /// Returns the column that `name` refers to, by standard or TRL name.
  init?(name: String) {
    let match = Self.allCases.first {
      $0.standardName == name || $0.trlName == name
    }
    guard let match else {
      return nil
    }
    self = match
  }
}

/// The policy and reference log-probs of a batch of preference pairs, read
/// from a CSV or TSV file.
///
/// The first non-blank record is a header that names the columns
/// `policy_chosen`, `policy_rejected`, `reference_chosen` and
/// `reference_rejected`, or TRL's `chosen_logps`, `rejected_logps`,
/// `ref_chosen_logps` and `ref_rejected_logps`, in any order. Other columns
/// are ignored, but every row must have as many fields as the header. Each
/// following record is one preference pair. A record is one line, or more
/// when a quoted field contains line breaks.
public struct LogProbTable: Equatable, Sendable {
  /// The policy model's log-probs of the chosen completions.
  public let policyChosen: [Double]

  /// The policy model's log-probs of the rejected completions.
  public let policyRejected: [Double]

  /// The reference model's log-probs of the chosen completions.
  public let referenceChosen: [Double]

  /// The reference model's log-probs of the rejected completions.
  public let referenceRejected: [Double]

  /// The number of preference pairs, which is the length of each column.
  public var count: Int {
    policyChosen.count
  }

  /// Reads the four log-prob columns of a CSV or TSV file.
  ///
  /// Fields are separated by tabs if the path ends in `.tsv` or the first
  /// line of the header contains a tab, and by commas otherwise. Spaces
  /// around a field, and tabs too in a comma-separated file, are ignored,
  /// as are a UTF-8 byte order mark, CRLF line ends, and lines that contain
  /// only whitespace. As in RFC 4180, a field may be enclosed in double
  /// quotes, and a quoted field may contain the delimiter, line breaks and
  /// doubled quotes, each of which stands for one quote. Such exports come
  /// from pandas' `to_csv` and Python's `csv` module for text columns. Line
  /// numbers in errors count physical lines.
  ///
  /// Cells are parsed by `parseDecimalNumber(_:)`: decimal numbers, read
  /// with `strtod(3)` in the C locale, and the words `nan`, `inf` and
  /// `infinity` with any capitalization and an optional sign. Hexadecimal
  /// floats are rejected, and so is finite text whose value rounds to
  /// infinity. Text that underflows becomes 0 or a subnormal.
  ///
  /// - Parameter path: The path of the CSV or TSV file.
  /// - Throws: A `LogProbTableError`:
  ///   - `.notFound` if nothing exists at `path`.
  ///   - `.unreadable` for a directory or another non-regular file, or if
  ///     a read fails.
  ///   - `.missingHeader` for a file without a non-blank line.
  ///   - `.missingColumns` if the header lacks a log-prob column.
  ///   - `.duplicateColumn` if two header fields name the same log-prob
  ///     column.
  ///   - `.raggedRow` for a row whose field count differs from the
  ///     header's.
  ///   - `.unterminatedQuote` for a quoted field without a closing quote.
  ///   - `.textAfterClosingQuote` for a quoted field followed by more than
  ///     spaces before the next delimiter or line end.
  ///   - `.invalidNumber` for an empty or non-numeric cell in a log-prob
  ///     column.
  ///   - `.hexadecimalNumber` for a hexadecimal float in a log-prob column.
  ///   - `.numberOutOfRange` for finite text in a log-prob column whose
  ///     magnitude is too large for a `Double`, such as `1e400`.
  ///   - `.noDataRows` if no row follows the header.
  /// - Complexity: O(b) time, where b is the file size in bytes. The whole
  ///   file is read into memory, and the four columns take 32 bytes per
  ///   row, up to twice that while they grow. Peak memory is therefore
  ///   about b plus 32 to 64 bytes per row.
  public init(contentsOf path: String) throws(LogProbTableError) {
    let file: ReadOnlyFile
    do {
      file = try ReadOnlyFile(path: path)
    } catch {
      throw LogProbTableError(error, path: path)
    }

    // One extra zero byte after the text stops strtod(3) at the end of the
    // last field when the file has no final newline.
    let buffer = UnsafeMutableRawBufferPointer.allocate(
      byteCount: file.size + 1,
      alignment: 1
    )
    defer { buffer.deallocate() }
    let readCount: Int
    do {
      readCount = try file.read(
        into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<file.size]),
        at: 0
      )
    } catch {
      throw LogProbTableError(error, path: path)
    }
    buffer[readCount] = 0

    var parser = TableParser(
      text: UnsafeRawBufferPointer(rebasing: buffer[..<readCount]),
      path: path,
      forcesTab: path.lowercased().hasSuffix(".tsv")
    )
    let columns = try parser.parse()
    policyChosen = columns[LogProbColumn.policyChosen.rawValue]
    policyRejected = columns[LogProbColumn.policyRejected.rawValue]
    referenceChosen = columns[LogProbColumn.referenceChosen.rawValue]
    referenceRejected = columns[LogProbColumn.referenceRejected.rawValue]
  }
}
