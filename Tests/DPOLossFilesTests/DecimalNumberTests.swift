// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossFiles
import Testing

@Suite("parseDecimalNumber")
struct DecimalNumberTests {
  @Test(
    "accepted text parses",
    arguments: [
      ("0.1", 0.1), ("-2.5e-3", -2.5e-3), ("+3", 3), (".5", 0.5),
      ("5.", 5), ("1E+2", 100), ("-0", -0.0), ("inf", .infinity),
      ("-Infinity", -.infinity), ("NAN", .nan), ("-nan", -Double.nan),
      ("1e-400", 0), ("4e-320", 8096 * Double.leastNonzeroMagnitude),
      ("1.7976931348623158e308", .greatestFiniteMagnitude),
    ]
  )
  func acceptedTextParses(text: String, expected: Double) throws {
    let value = try parseDecimalNumber(text)

    if expected.isNaN {
      #expect(value.isNaN, "parsed \(value)")
      #expect(value.sign == expected.sign, "parsed \(value)")
    } else {
      #expect(value.bitPattern == expected.bitPattern, "parsed \(value)")
    }
  }

  @Test(
    "rejected text names problem",
    arguments: [
      ("", NumberTextError.notANumber), (" 1", .notANumber),
      ("1 ", .notANumber), ("1_000", .notANumber), ("nan(1)", .notANumber),
      ("infinit", .notANumber), ("--1", .notANumber), ("1e", .notANumber),
      ("x1", .notANumber), ("0x1p-3", .hexadecimal), ("-0X10", .hexadecimal),
      ("1e400", .outOfRange), ("-1e400", .outOfRange),
      ("1.7976931348623159e308", .outOfRange),
      (String(repeating: "9", count: 5000), .outOfRange),
      ("-" + String(repeating: "1", count: 5000), .outOfRange),
    ]
  )
  func rejectedTextNamesProblem(
    text: String,
    expected: NumberTextError
  ) {
    let error = #expect(throws: NumberTextError.self) {
      try parseDecimalNumber(text)
    }

    #expect(error == expected, "text '\(text.prefix(40))'")
  }
}
