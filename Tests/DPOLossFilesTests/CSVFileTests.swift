// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossFiles
import DPOLossTestSupport
import Foundation
import Testing

@Suite("CSVFile writing")
struct CSVFileTests {
  @Test("output text is exact")
  func outputTextIsExact() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("out.csv")

    try CSVFile.write(
      columns: [
        ("loss", [0.5, 1e-300, .nan]),
        ("reward", [-2.25, .infinity, -.infinity]),
      ],
      to: path
    )

    let text = try String(contentsOfFile: path, encoding: .utf8)
    #expect(text == "loss,reward\n0.5,-2.25\n1e-300,inf\nnan,-inf\n")
  }

  @Test("tsv extension writes tabs")
  func tsvExtensionWritesTabs() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("out.tsv")

    try CSVFile.write(columns: [("a", [1]), ("b", [-0.0])], to: path)

    let text = try String(contentsOfFile: path, encoding: .utf8)
    #expect(text == "a\tb\n1.0\t-0.0\n")
  }

  @Test("empty columns write header only")
  func emptyColumnsWriteHeaderOnly() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("out.csv")

    try CSVFile.write(columns: [("a", []), ("b", [])], to: path)

    let text = try String(contentsOfFile: path, encoding: .utf8)
    #expect(text == "a,b\n")
  }

  @Test(
    "log-prob table round trips",
    arguments: ["table.csv", "table.tsv"]
  )
  func logProbTableRoundTrips(name: String) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file(name)
    let random = pseudoRandomLogProbs(count: 50_000, seed: 31)
    // Swift prints NaN as nan whatever its sign, so -nan reads back as NaN
    // with an unspecified sign.
    let special = specialDoubles + [-.nan]
    let policyChosen = special + random
    let policyRejected = special.reversed() + random.map { $0 * 3 }
    let referenceChosen = random + special
    let referenceRejected = random.map { $0 / 7 } + special

    try CSVFile.write(
      columns: [
        ("ref_rejected_logps", referenceRejected),
        ("step", Array(repeating: 1, count: policyChosen.count)),
        ("chosen_logps", policyChosen),
        ("rejected_logps", policyRejected),
        ("ref_chosen_logps", referenceChosen),
      ],
      to: path
    )
    let table = try LogProbTable(contentsOf: path)

    #expect(firstMismatch(table.policyChosen, policyChosen) == nil)
    #expect(firstMismatch(table.policyRejected, policyRejected) == nil)
    #expect(firstMismatch(table.referenceChosen, referenceChosen) == nil)
    #expect(firstMismatch(table.referenceRejected, referenceRejected) == nil)
  }

  @Test("no columns throws")
  func noColumnsThrows() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("out.csv")

    let error = #expect(throws: FileWriteError.self) {
      try CSVFile.write(columns: [], to: path)
    }

    #expect(error == .noColumns(path: path))
    #expect(try directory.entries() == [])
  }

  @Test(
    "invalid column name throws",
    arguments: [
      ("", "out.csv", "is empty"),
      ("a,b", "out.csv", "contains the delimiter, a comma"),
      ("a\tb", "out.tsv", "contains the delimiter, a tab"),
      ("say \"hi\"", "out.csv", "contains a double quote"),
      ("two\nlines", "out.csv", "contains a line break"),
      ("cr\r", "out.csv", "contains a line break"),
      (" padded", "out.csv", "starts or ends with whitespace"),
      ("padded\t", "out.csv", "starts or ends with whitespace"),
    ]
  )
  func invalidColumnNameThrows(
    name: String,
    file: String,
    reason: String
  ) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file(file)

    let error = #expect(throws: FileWriteError.self) {
      try CSVFile.write(columns: [("ok", [1]), (name, [2])], to: path)
    }

    #expect(
      error == .invalidColumnName(path: path, name: name, reason: reason)
    )
    #expect(try directory.entries() == [])
  }

  @Test("duplicate column name throws")
  func duplicateColumnNameThrows() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("out.csv")

    let error = #expect(throws: FileWriteError.self) {
      try CSVFile.write(
        columns: [("a", [1]), ("b", [2]), ("a", [3])],
        to: path
      )
    }

    #expect(error == .duplicateColumnName(path: path, name: "a"))
  }

  @Test("unequal column lengths throw")
  func unequalColumnLengthsThrow() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("out.csv")

    let error = #expect(throws: FileWriteError.self) {
      try CSVFile.write(columns: [("a", [1, 2]), ("b", [3])], to: path)
    }

    #expect(
      error
        == .columnLengthMismatch(
          path: path,
          name: "b",
          count: 1,
          expectedCount: 2
        )
    )
    #expect(error?.description.contains("has 1 values") == true)
    #expect(try directory.entries() == [])
  }

  @Test("failed write keeps existing file")
  func failedWriteKeepsExistingFile() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = try directory.write("a\n1.0\n", to: "out.csv")

    #expect(throws: FileWriteError.self) {
      try CSVFile.write(columns: [("a", [1, 2]), ("b", [3])], to: path)
    }

    #expect(try String(contentsOfFile: path, encoding: .utf8) == "a\n1.0\n")
    #expect(try directory.entries() == ["out.csv"])
  }

  @Test("missing directory throws createFailed")
  func missingDirectoryThrowsCreateFailed() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("absent/out.csv")

    let error = #expect(throws: FileWriteError.self) {
      try CSVFile.write(columns: [("a", [1])], to: path)
    }

    #expect(
      error
        == .createFailed(path: path, reason: String(cString: strerror(ENOENT)))
    )
  }

  @Test("relative path writes to current directory")
  func relativePathWritesToCurrentDirectory() throws {
    // Changing the directory affects the whole process, which is safe only
    // because every other test uses absolute paths.
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let files = FileManager.default
    let previous = files.currentDirectoryPath
    defer { _ = files.changeCurrentDirectoryPath(previous) }
    try #require(files.changeCurrentDirectoryPath(directory.path))

    try CSVFile.write(columns: [("a", [1])], to: "out.csv")

    #expect(try directory.entries() == ["out.csv"])
  }
}
