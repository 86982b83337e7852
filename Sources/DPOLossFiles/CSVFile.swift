// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// Writing of numeric tables as CSV or TSV files.
public enum CSVFile {
  /// Writes named columns of equal length as a CSV or TSV table.
  ///
  /// The first line is the header of column names and each following line
  /// is one row, with `\n` line ends. Fields are separated by tabs if `path`
  /// ends in `.tsv`, with any capitalization, and by commas otherwise.
  /// Values are printed with Swift's `description`, the shortest decimal
  /// text that parses back to the same `Double`, and infinities as `inf`
  /// and `-inf`. NaN is printed as `nan` and loses its sign and payload.
  /// `LogProbTable(contentsOf:)`, Python's `float()` and NumPy 2.4's
  /// `loadtxt` read the values back exactly. The table is
  /// written to a temporary file in the same directory and renamed to
  /// `path`, so on failure nothing is left at `path` and an existing file
  /// there is unchanged.
  ///
  /// - Parameters:
  ///   - columns: The column names and values, in output order. Columns may
  ///     be empty, which writes only the header.
  ///   - path: The destination path.
  /// - Throws: A `FileWriteError`:
  ///   - `.noColumns` if `columns` is empty.
  ///   - `.invalidColumnName` for a name that is empty, starts or ends with
  ///     whitespace, or contains the delimiter, a double quote or a line
  ///     break.
  ///   - `.duplicateColumnName` if two columns share a name.
  ///   - `.columnLengthMismatch` if a column's length differs from the
  ///     first column's.
  ///   - `.createFailed` if the temporary file cannot be created.
  ///   - `.writeFailed` if writing or `fsync(2)` fails.
  ///   - `.renameFailed` if the finished file cannot be moved to `path`.
  /// - Complexity: O(n) time, where n is the number of values, and a 1 MiB
  ///   write buffer.
  public static func write(
    columns: [(name: String, values: [Double])],
    to path: String
  ) throws(FileWriteError) {
    let delimiter: UInt8 =
      path.lowercased().hasSuffix(".tsv")
      ? UInt8(ascii: "\t") : UInt8(ascii: ",")
    try validate(columns, delimiter: delimiter, path: path)

    let writer = try AtomicFileWriter(path: path)
    for (index, column) in columns.enumerated() {
      if index > 0 {
        try writer.append(delimiter)
      }
      try writer.append(column.name)
    }
    try writer.append(UInt8(ascii: "\n"))

    for row in 0..<columns[0].values.count {
      for (index, column) in columns.enumerated() {
        if index > 0 {
          try writer.append(delimiter)
        }
        try writer.append(column.values[row].description)
      }
      try writer.append(UInt8(ascii: "\n"))
    }
    try writer.commit()
  }

  /// Checks that the columns can be written and read back unchanged.
  private static func validate(
    _ columns: [(name: String, values: [Double])],
    delimiter: UInt8,
    path: String
  ) throws(FileWriteError) {
    guard let first = columns.first else {
      throw .noColumns(path: path)
    }

    var seen: Set<String> = []
    for column in columns {
      let name = column.name
      if let reason = nameProblem(name, delimiter: delimiter) {
        throw .invalidColumnName(path: path, name: name, reason: reason)
      }
      if !seen.insert(name).inserted {
        throw .duplicateColumnName(path: path, name: name)
      }
      if column.values.count != first.values.count {
        throw .columnLengthMismatch(
          path: path,
          name: name,
          count: column.values.count,
          expectedCount: first.values.count
        )
      }
    }
  }

  /// Returns why `name` cannot be a header field, or `nil` if it can.
  private static func nameProblem(
    _ name: String,
    delimiter: UInt8
  ) -> String? {
    if name.isEmpty {
      return "is empty"
    }
    if name.utf8.contains(delimiter) {
      let delimiterName =
        delimiter == UInt8(ascii: "\t") ? "a tab" : "a comma"
      return "contains the delimiter, \(delimiterName)"
    }
    if name.contains("\"") {
      return "contains a double quote"
    }
    if name.contains(where: \.isNewline) {
      return "contains a line break"
    }
    if name.first == " " || name.last == " " || name.first == "\t"
      || name.last == "\t"
    {
      return "starts or ends with whitespace"
    }
    return nil
  }
}
