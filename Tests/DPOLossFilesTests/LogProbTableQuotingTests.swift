// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossFiles
import DPOLossTestSupport
import Testing

/// RFC 4180 quoted fields, as pandas' `to_csv` writes them for text columns.
@Suite("LogProbTable quoted fields")
struct LogProbTableQuotingTests {
  private static let header =
    "id,prompt,chosen_logps,rejected_logps,ref_chosen_logps,"
    + "ref_rejected_logps"

  /// Writes `text` to a file and loads it.
  private func load(_ text: String) throws -> LogProbTable {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = try directory.write(text, to: "table.csv")
    return try LogProbTable(contentsOf: path)
  }

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

  @Test("quoted delimiter stays in field")
  func quotedDelimiterStaysInField() throws {
    let table = try load(
      """
      \(Self.header)
      0,"Hello, world, again",-1,-2,-3,-4
      1,plain,-5,-6,-7,-8

      """
    )

    #expect(table.policyChosen == [-1, -5])
    #expect(table.policyRejected == [-2, -6])
    #expect(table.referenceChosen == [-3, -7])
    #expect(table.referenceRejected == [-4, -8])
  }

  @Test("doubled quote is one quote")
  func doubledQuoteIsOneQuote() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    // The first row parses. In the second, the doubled quotes of the bad
    // cell are reported as one quote each.
    let text =
      "\(Self.header)\n"
      + "0,\"She said \"\"hi, there\"\"\",-1,-2,-3,-4\n"
      + "1,x,-1,\"2\"\"5\",-3,-4\n"

    let (path, error) = try loadError(text, in: directory)

    #expect(
      error
        == .invalidNumber(
          path: path,
          line: 3,
          column: 4,
          columnName: "rejected_logps",
          text: "2\"5"
        )
    )
  }

  @Test("doubled quote in header name")
  func doubledQuoteInHeaderName() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let text =
      "\"a \"\"b\"\"\",chosen_logps,rejected_logps,ref_chosen_logps\n"
      + "0,-1,-2,-3\n"

    let (path, error) = try loadError(text, in: directory)

    #expect(
      error
        == .missingColumns(
          path: path,
          missing: ["reference_rejected"],
          header: [
            "a \"b\"", "chosen_logps", "rejected_logps", "ref_chosen_logps",
          ]
        )
    )
  }

  @Test("quoted newline in ignored column")
  func quotedNewlineInIgnoredColumn() throws {
    let table = try load(
      "\(Self.header)\r\n"
        + "0,\"line one\r\nline two\n\nline four\",-1,-2,-3,-4\r\n"
        + "1,\"\",-5,-6,-7,-8\r\n"
    )

    #expect(table.count == 2)
    #expect(table.policyChosen == [-1, -5])
    #expect(table.referenceRejected == [-4, -8])
  }

  @Test("line numbers count quoted newlines")
  func lineNumbersCountQuotedNewlines() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    // The quoted prompt spans lines 2 to 4, so the bad cell is on line 5.
    let text =
      "\(Self.header)\n"
      + "0,\"one\ntwo\nthree\",-1,-2,-3,-4\n"
      + "1,x,-1,oops,-3,-4\n"

    let (path, error) = try loadError(text, in: directory)

    #expect(
      error
        == .invalidNumber(
          path: path,
          line: 5,
          column: 4,
          columnName: "rejected_logps",
          text: "oops"
        )
    )
  }

  @Test("ragged row after quoted newline")
  func raggedRowAfterQuotedNewline() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    // The row that starts on line 2 spans two lines and has 7 fields.
    let text =
      "\(Self.header)\n"
      + "0,\"two\nlines\",-1,-2,-3,-4,extra\n"

    let (path, error) = try loadError(text, in: directory)

    #expect(
      error
        == .raggedRow(path: path, line: 2, expectedFields: 6, foundFields: 7)
    )
  }

  @Test("unterminated quote is located")
  func unterminatedQuoteIsLocated() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let text =
      "\(Self.header)\n"
      + "0,plain,-1,-2,-3,-4\n"
      + "1,\"never closed,-1,-2,-3,-4\n"
      + "2,plain,-1,-2,-3,-4\n"

    let (path, error) = try loadError(text, in: directory)

    #expect(error == .unterminatedQuote(path: path, line: 3, column: 2))
    let message = error?.description ?? ""
    #expect(message.hasPrefix("\(path):3: column 2"), "message: \(message)")
    #expect(message.contains("never closed"), "message: \(message)")
    #expect(message.contains("two quotes"), "message: \(message)")
  }

  @Test("text after closing quote")
  func textAfterClosingQuote() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let text =
      "\(Self.header)\n"
      + "0,\"two\nlines\" trailing,-1,-2,-3,-4\n"

    let (path, error) = try loadError(text, in: directory)

    #expect(error == .textAfterClosingQuote(path: path, line: 3, column: 2))
    let message = error?.description ?? ""
    #expect(message.hasPrefix("\(path):3: column 2"), "message: \(message)")
  }

  @Test("numeric cells in quotes parse")
  func numericCellsInQuotesParse() throws {
    // pandas writes every field in quotes with quoting=csv.QUOTE_ALL.
    let table = try load(
      "\"id\",\"prompt\",\"chosen_logps\",\"rejected_logps\","
        + "\"ref_chosen_logps\",\"ref_rejected_logps\"\n"
        + "\"0\",\"a, b\",\"-1.5\",\"-2.5e1\" ,  \"nan\",\"-inf\""
    )

    #expect(table.policyChosen == [-1.5])
    #expect(table.policyRejected == [-25])
    #expect(try #require(table.referenceChosen.first).isNaN)
    #expect(table.referenceRejected == [-.infinity])
  }

  @Test(
    "quoted cell keeps inner spaces",
    arguments: ["\" -1\"", "\"-1 \""]
  )
  func quotedCellKeepsInnerSpaces(cell: String) throws {
    // Spaces inside quotes belong to the field, and a number has none.
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let text =
      "chosen_logps,rejected_logps,ref_chosen_logps,ref_rejected_logps\n"
      + "\(cell),-2,-3,-4\n"

    let (path, error) = try loadError(text, in: directory)

    #expect(
      error
        == .invalidNumber(
          path: path,
          line: 2,
          column: 1,
          columnName: "chosen_logps",
          text: String(cell.dropFirst().dropLast())
        )
    )
  }

  @Test("quoted TSV field keeps tab")
  func quotedTSVFieldKeepsTab() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let text =
      "id\tprompt\tchosen_logps\trejected_logps\tref_chosen_logps\t"
      + "ref_rejected_logps\n"
      + "0\t\"a\tb\"\t-1\t-2\t-3\t-4\n"
    let path = try directory.write(text, to: "table.tsv")

    let table = try LogProbTable(contentsOf: path)

    #expect(table.policyChosen == [-1])
    #expect(table.referenceRejected == [-4])
  }
}
