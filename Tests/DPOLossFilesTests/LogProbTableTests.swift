// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossFiles
import DPOLossTestSupport
import Foundation
import Testing

/// A decimal fraction with 5000 zeros after the point, which underflows.
private let tinyFractionText = "0." + String(repeating: "0", count: 5000) + "1"

@Suite("LogProbTable reading")
struct LogProbTableTests {
  /// Writes `text` to `name` in a new directory and loads it.
  private func load(
    _ text: String,
    name: String = "table.csv"
  ) throws -> LogProbTable {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = try directory.write(text, to: name)
    return try LogProbTable(contentsOf: path)
  }

  @Test("standard names parse")
  func standardNamesParse() throws {
    let table = try load(
      """
      policy_chosen,policy_rejected,reference_chosen,reference_rejected
      -1.5,-2.5,-3.5,-4.5
      -10,-20,-30,-40

      """
    )

    #expect(table.count == 2)
    #expect(table.policyChosen == [-1.5, -10])
    #expect(table.policyRejected == [-2.5, -20])
    #expect(table.referenceChosen == [-3.5, -30])
    #expect(table.referenceRejected == [-4.5, -40])
  }

  @Test("TRL column names parse")
  func trlColumnNamesParse() throws {
    let table = try load(
      """
      chosen_logps,rejected_logps,ref_chosen_logps,ref_rejected_logps
      -1,-2,-3,-4
      """
    )

    #expect(table.policyChosen == [-1])
    #expect(table.policyRejected == [-2])
    #expect(table.referenceChosen == [-3])
    #expect(table.referenceRejected == [-4])
  }

  @Test("column order and extras are free")
  func columnOrderAndExtrasAreFree() throws {
    let table = try load(
      """
      id,reference_rejected,note,policy_chosen,ref_chosen_logps,rejected_logps
      7,-4,hello,-1,-3,-2
      8,-40,,-10,-30,-20
      """
    )

    #expect(table.policyChosen == [-1, -10])
    #expect(table.policyRejected == [-2, -20])
    #expect(table.referenceChosen == [-3, -30])
    #expect(table.referenceRejected == [-4, -40])
  }

  @Test("CRLF line ends parse")
  func crlfLineEndsParse() throws {
    let table = try load(
      "policy_chosen,policy_rejected,reference_chosen,reference_rejected\r\n"
        + "-1,-2,-3,-4\r\n-5,-6,-7,-8\r\n\r\n"
    )

    #expect(table.policyChosen == [-1, -5])
    #expect(table.referenceRejected == [-4, -8])
  }

  @Test("tab in header selects TSV")
  func tabInHeaderSelectsTSV() throws {
    let table = try load(
      "policy_chosen\tpolicy_rejected\treference_chosen\treference_rejected\n"
        + "-1\t-2\t-3\t-4\n",
      name: "table.txt"
    )

    #expect(table.policyChosen == [-1])
    #expect(table.referenceRejected == [-4])
  }

  @Test("tsv extension forces tab delimiter")
  func tsvExtensionForcesTab() throws {
    // The fields are separated by commas, so the .tsv file has one column.
    let header =
      "policy_chosen,policy_rejected,reference_chosen,reference_rejected"
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = try directory.write("\(header)\n-1,-2,-3,-4\n", to: "t.TSV")

    let error = #expect(throws: LogProbTableError.self) {
      try LogProbTable(contentsOf: path)
    }

    #expect(
      error
        == .missingColumns(
          path: path,
          missing: [
            "policy_chosen", "policy_rejected", "reference_chosen",
            "reference_rejected",
          ],
          header: [header]
        )
    )
  }

  @Test("TSV keeps empty extra fields")
  func tsvKeepsEmptyExtraFields() throws {
    // A trailing tab is an empty last field, not padding.
    let table = try load(
      "policy_chosen\tpolicy_rejected\treference_chosen\treference_rejected\t"
        + "note\n-1\t-2\t-3\t-4\t\n",
      name: "table.tsv"
    )

    #expect(table.policyChosen == [-1])
  }

  @Test("whitespace, quotes and BOM are ignored")
  func whitespaceQuotesAndBOMIgnored() throws {
    let table = try load(
      "\u{FEFF} \"policy_chosen\" ,policy_rejected,  reference_chosen ,"
        + "reference_rejected  \n"
        + "  -1 ,\"-2\",\t-3\t, -4  \n"
    )

    #expect(table.policyChosen == [-1])
    #expect(table.policyRejected == [-2])
    #expect(table.referenceChosen == [-3])
    #expect(table.referenceRejected == [-4])
  }

  @Test("blank lines are skipped")
  func blankLinesAreSkipped() throws {
    let table = try load(
      "\n  \npolicy_chosen,policy_rejected,reference_chosen,"
        + "reference_rejected\n\n-1,-2,-3,-4\n \t \n-5,-6,-7,-8\n\n\n"
    )

    #expect(table.policyChosen == [-1, -5])
  }

  @Test("missing final newline parses")
  func missingFinalNewlineParses() throws {
    let table = try load(
      "policy_chosen,policy_rejected,reference_chosen,reference_rejected\n"
        + "-1,-2,-3,-4.25e1"
    )

    #expect(table.referenceRejected == [-42.5])
  }

  @Test(
    "special values parse",
    arguments: [
      ("nan", Double.nan), ("NaN", .nan), ("-nan", -Double.nan),
      ("inf", .infinity), ("-inf", -.infinity), ("+inf", .infinity),
      ("Infinity", .infinity), ("-Infinity", -.infinity),
      ("INF", .infinity), ("-0", -0.0), ("-0.0", -0.0), ("0", 0),
      ("1e308", 1e308), ("1.7976931348623158e308", .greatestFiniteMagnitude),
      ("5e-324", .leastNonzeroMagnitude), ("1e-400", 0), ("-1e-400", -0.0),
      (tinyFractionText, 0), (".5", 0.5),
      ("-.5", -0.5), ("5.", 5), ("+3", 3), ("1E+2", 100),
      ("-141.30167279770984", -141.30167279770984),
    ]
  )
  func specialValuesParse(text: String, expected: Double) throws {
    let table = try load(
      "policy_chosen,policy_rejected,reference_chosen,reference_rejected\n"
        + "\(text),0,0,0\n"
    )
    let value = try #require(table.policyChosen.first)

    if expected.isNaN {
      #expect(value.isNaN)
      #expect(value.sign == expected.sign)
    } else {
      #expect(value.bitPattern == expected.bitPattern, "parsed \(value)")
    }
  }

  @Test("parsing matches Double initializer")
  func parsingMatchesDoubleInitializer() throws {
    // Shortest round-trip text and 17 significant digits both parse to the
    // value that Double(String) returns.
    let expected =
      pseudoRandomLogProbs(count: 2000, seed: 23)
      + specialDoubles.filter(\.isFinite)
    var text =
      "policy_chosen,policy_rejected,reference_chosen,reference_rejected\n"
    for value in expected {
      let long = String(format: "%.17g", value)
      text += "\(value),\(long),\(value),\(long)\n"
    }

    let table = try load(text)

    #expect(firstMismatch(table.policyChosen, expected) == nil)
    #expect(firstMismatch(table.policyRejected, expected) == nil)
  }

  @Test("large table loads")
  func largeTableLoads() throws {
    let expected = pseudoRandomLogProbs(count: 100_000, seed: 29)
    var text =
      "policy_chosen,policy_rejected,reference_chosen,reference_rejected\n"
    text.reserveCapacity(expected.count * 90)
    for value in expected {
      text += "\(value),\(value - 1),\(value - 2),\(value - 3)\n"
    }

    let table = try load(text)

    #expect(table.count == expected.count)
    #expect(firstMismatch(table.policyChosen, expected) == nil)
    #expect(
      firstMismatch(table.referenceRejected, expected.map { $0 - 3 }) == nil
    )
  }
}
