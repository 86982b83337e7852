// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossFiles
import DPOLossTestSupport
import Foundation
import Testing

@Suite("LogProbTable errors")
struct LogProbTableErrorTests {
  private static let header =
    "policy_chosen,policy_rejected,reference_chosen,reference_rejected"

  /// Writes `text` to a file and returns the error that loading it throws.
  private func loadError(
    _ text: String,
    in directory: TemporaryDirectory
  ) throws -> (path: String, error: LogProbTableError?) {
    let path = try directory.write(text, to: "bad.csv")
    let error = #expect(throws: LogProbTableError.self) {
      try LogProbTable(contentsOf: path)
    }
    return (path, error)
  }

  @Test("missing file throws notFound")
  func missingFileThrowsNotFound() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("absent.csv")

    let error = #expect(throws: LogProbTableError.self) {
      try LogProbTable(contentsOf: path)
    }

    #expect(error == .notFound(path: path))
    #expect(error?.description.contains("not found") == true)
  }

  @Test("directory throws unreadable")
  func directoryThrowsUnreadable() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")

    let error = #expect(throws: LogProbTableError.self) {
      try LogProbTable(contentsOf: directory.path)
    }

    #expect(
      error == .unreadable(path: directory.path, reason: "it is a directory")
    )
  }

  @Test(
    "permission denied throws unreadable",
    .enabled(if: getuid() != 0, "root can read files without permission")
  )
  func permissionDeniedThrowsUnreadable() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = try directory.write("\(Self.header)\n-1,-2,-3,-4\n", to: "a.csv")
    chmod(path, 0)

    let error = #expect(throws: LogProbTableError.self) {
      try LogProbTable(contentsOf: path)
    }

    #expect(
      error
        == .unreadable(path: path, reason: String(cString: strerror(EACCES)))
    )
  }

  @Test("empty file throws missingHeader", arguments: ["", "\n\n", " \r\n\t"])
  func emptyFileThrowsMissingHeader(text: String) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")

    let (path, error) = try loadError(text, in: directory)

    #expect(error == .missingHeader(path: path))
  }

  @Test("missing columns are listed")
  func missingColumnsAreListed() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let text = "policy_chosen,reference_chosen,extra\n-1,-3,0\n"

    let (path, error) = try loadError(text, in: directory)

    #expect(
      error
        == .missingColumns(
          path: path,
          missing: ["policy_rejected", "reference_rejected"],
          header: ["policy_chosen", "reference_chosen", "extra"]
        )
    )
    let message = error?.description ?? ""
    #expect(
      message.contains("missing columns 'policy_rejected', "),
      "message: \(message)"
    )
    #expect(
      message.contains("'policy_chosen', 'reference_chosen', 'extra'"),
      "message: \(message)"
    )
    #expect(message.contains("ref_rejected_logps"), "message: \(message)")
  }

  @Test(
    "duplicate column throws",
    arguments: [
      (
        "policy_chosen,policy_rejected,reference_chosen,reference_rejected,"
          + "policy_chosen",
        ["policy_chosen", "policy_chosen"], [1, 5], "more than once"
      ),
      (
        "chosen_logps,policy_rejected,reference_chosen,reference_rejected,"
          + "policy_chosen",
        ["chosen_logps", "policy_chosen"], [1, 5], "name the same log-probs"
      ),
    ]
  )
  func duplicateColumnThrows(
    header: String,
    names: [String],
    columns: [Int],
    phrase: String
  ) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")

    let (path, error) = try loadError(
      "\(header)\n-1,-2,-3,-4,-5\n",
      in: directory
    )

    #expect(
      error == .duplicateColumn(path: path, names: names, columns: columns)
    )
    #expect(error?.description.contains(phrase) == true)
  }

  @Test(
    "invalid cell is located",
    arguments: [
      "abc", "", "\"\"", "1.5.2", "1e", "nan(1)", "--1", "1,5", "1x",
      "infinit", "- 1", "1_000", "١",
    ]
  )
  func invalidCellIsLocated(cell: String) throws {
    // "1,5" adds a field, so it is reported as a ragged row instead.
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let header =
      "id,policy_chosen,policy_rejected,reference_chosen,"
      + "reference_rejected"
    let text = "\(header)\n0,-1,-2,-3,-4\n\n1,-1,\(cell),-3,-4\n"

    let (path, error) = try loadError(text, in: directory)

    if cell.contains(",") {
      #expect(
        error
          == .raggedRow(path: path, line: 4, expectedFields: 5, foundFields: 6)
      )
      return
    }
    let expectedText = cell == "\"\"" ? "" : cell
    #expect(
      error
        == .invalidNumber(
          path: path,
          line: 4,
          column: 3,
          columnName: "policy_rejected",
          text: expectedText
        )
    )
    let message = error?.description ?? ""
    #expect(
      message.hasPrefix("\(path):4: column 3 ('policy_rejected')"),
      "message: \(message)"
    )
  }

  @Test(
    "hexadecimal cell is rejected",
    arguments: [
      ("0x1p3", " (0x1p3 is 8.0)"), ("-0X1P-3", " (-0X1P-3 is -0.125)"),
      ("+0x10", " (+0x10 is 16.0)"), ("0x1pz", ""),
    ]
  )
  func hexadecimalCellIsRejected(cell: String, example: String) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")

    let (path, error) = try loadError(
      "\(Self.header)\n-1,-2,-3,-4\n-1,-2,\(cell),-4\n",
      in: directory
    )

    #expect(
      error
        == .hexadecimalNumber(
          path: path,
          line: 3,
          column: 3,
          columnName: "reference_chosen",
          text: cell
        )
    )
    let message = error?.description ?? ""
    #expect(
      message.hasPrefix("\(path):3: column 3 ('reference_chosen')"),
      "message: \(message)"
    )
    #expect(message.contains("'\(cell)'"), "message: \(message)")
    #expect(
      message.contains("decimal notation\(example)."),
      "message: \(message)"
    )
  }

  @Test(
    "overflowing cell is rejected",
    arguments: [
      "1e400", "-1e400", "1e999", "1.7976931348623159e308", "2e308",
      String(repeating: "9", count: 5000),
      "-" + String(repeating: "9", count: 5000) + ".5",
    ]
  )
  func overflowingCellIsRejected(cell: String) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")

    let (path, error) = try loadError(
      "\(Self.header)\n-1,-2,-3,-4\n\n\(cell),-2,-3,-4\n",
      in: directory
    )

    #expect(
      error
        == .numberOutOfRange(
          path: path,
          line: 4,
          column: 1,
          columnName: "policy_chosen",
          text: cell
        )
    )
    let message = error?.description ?? ""
    #expect(
      message.hasPrefix("\(path):4: column 1 ('policy_chosen')"),
      "message: \(message)"
    )
    #expect(message.contains("outside the range"), "message: \(message)")
    #expect(message.contains(String(cell.prefix(37))), "message: \(message)")
  }

  @Test("long invalid cell is shortened")
  func longInvalidCellIsShortened() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let cell = String(repeating: "x", count: 100)

    let (_, error) = try loadError(
      "\(Self.header)\n-1,\(cell),-3,-4\n",
      in: directory
    )

    let message = error?.description ?? ""
    #expect(message.contains(String(repeating: "x", count: 37) + "...'"))
    #expect(!message.contains(String(repeating: "x", count: 38)))
  }

  @Test(
    "ragged row is located",
    arguments: [("-1,-2,-3", 3), ("-1,-2,-3,-4,-5", 5), ("-1", 1)]
  )
  func raggedRowIsLocated(row: String, found: Int) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let text = "\(Self.header)\r\n-1,-2,-3,-4\r\n\(row)\r\n-1,-2,-3,-4\r\n"

    let (path, error) = try loadError(text, in: directory)

    #expect(
      error
        == .raggedRow(
          path: path,
          line: 3,
          expectedFields: 4,
          foundFields: found
        )
    )
    let message = error?.description ?? ""
    #expect(message.contains("\(found) fields"), "message: \(message)")
    #expect(message.contains("has 4"), "message: \(message)")
  }

  @Test("ragged row reported before bad cell")
  func raggedRowReportedBeforeBadCell() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")

    let (path, error) = try loadError(
      "\(Self.header)\n-1,oops,-3\n",
      in: directory
    )

    #expect(
      error
        == .raggedRow(path: path, line: 2, expectedFields: 4, foundFields: 3)
    )
  }

  @Test("header only throws noDataRows")
  func headerOnlyThrowsNoDataRows() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")

    let (path, error) = try loadError("\(Self.header)\n\n \n", in: directory)

    #expect(error == .noDataRows(path: path))
    #expect(error?.description.contains("no data rows") == true)
  }
}
