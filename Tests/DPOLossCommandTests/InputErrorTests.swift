// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossTestSupport
import Foundation
import Testing

/// Invalid input files: each run must exit with status 1, print nothing to
/// standard output, name the file and the problem, and write no
/// `--per-example` output.
@Suite("Input errors")
struct InputErrorTests {
  /// Runs the command with the standard batch, except that the policy
  /// chosen log-probs come from `path`, and requests `--per-example` output
  /// into `directory/out`.
  private func runWithPolicyChosen(
    _ path: String,
    in directory: TemporaryDirectory
  ) throws -> CommandResult {
    var arguments = try SampleBatch.standard.writeNumPy(in: directory)
    arguments[1] = path
    return runInProcess(
      arguments + ["--per-example", directory.file("out")]
    )
  }

  @Test("missing file is reported")
  func missingFileIsReported() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = directory.file("absent.npy")

    let result = try runWithPolicyChosen(path, in: directory)

    #expect(result.status == 1)
    #expect(result.output.isEmpty)
    #expect(result.error.contains(path))
    #expect(result.error.contains("file not found"))
    #expect(!directory.contains("out"))
  }

  @Test("directory input is unreadable")
  func directoryInputIsUnreadable() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = directory.file("folder.npy")
    try FileManager.default.createDirectory(
      atPath: path,
      withIntermediateDirectories: false
    )

    let result = try runWithPolicyChosen(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains(path))
    #expect(result.error.contains("cannot read"))
    #expect(result.error.contains("directory"))
    #expect(!directory.contains("out"))
  }

  @Test("non-npy file is reported")
  func nonNumPyFileIsReported() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = try directory.write("-1.0\n-2.0\n-3.0\n", to: "values.npy")

    let result = try runWithPolicyChosen(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains(path))
    #expect(result.error.contains("not a NumPy .npy file"))
    #expect(!directory.contains("out"))
  }

  @Test(
    "unsupported dtype is named",
    arguments: [
      ("<i8", 8, "integer"), ("<f2", 2, "float16"),
      ("<c16", 16, "complex"), (">f8", 8, "big-endian"),
    ]
  )
  func unsupportedDTypeIsNamed(
    descr: String,
    itemSize: Int,
    name: String
  ) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let bytes = numPyBytes(
      descr: descr,
      shape: "(3,)",
      data: [UInt8](repeating: 0, count: 3 * itemSize)
    )
    let path = try directory.write(bytes, to: "typed.npy")

    let result = try runWithPolicyChosen(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains(path))
    #expect(result.error.contains("unsupported dtype"))
    #expect(result.error.contains(name))
    #expect(!directory.contains("out"))
  }

  @Test("two-dimensional array is rejected")
  func twoDimensionalArrayIsRejected() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let bytes = numPyBytes(
      descr: "<f8",
      shape: "(3, 2)",
      data: [UInt8](repeating: 0, count: 48)
    )
    let path = try directory.write(bytes, to: "matrix.npy")

    let result = try runWithPolicyChosen(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains(path))
    #expect(result.error.contains("shape (3, 2)"))
    #expect(result.error.contains("1-D"))
    #expect(!directory.contains("out"))
  }

  @Test("Fortran order is rejected")
  func fortranOrderIsRejected() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let bytes = numPyBytes(
      descr: "<f8",
      shape: "(3,)",
      fortranOrder: true,
      data: [UInt8](repeating: 0, count: 24)
    )
    let path = try directory.write(bytes, to: "fortran.npy")

    let result = try runWithPolicyChosen(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains(path))
    #expect(result.error.contains("fortran_order"))
    #expect(!directory.contains("out"))
  }

  @Test("truncated file is reported")
  func truncatedFileIsReported() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    // The header promises 3 float64 values, 24 bytes, but 20 follow.
    let bytes = numPyBytes(
      descr: "<f8",
      shape: "(3,)",
      data: [UInt8](repeating: 0, count: 20)
    )
    let path = try directory.write(bytes, to: "truncated.npy")

    let result = try runWithPolicyChosen(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains(path))
    #expect(result.error.contains("truncated"))
    #expect(result.error.contains("24 bytes"))
    #expect(!directory.contains("out"))
  }

  @Test("arrays of different lengths")
  func arraysOfDifferentLengths() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = try directory.writeNumPy([-1, -2, -3, -4], to: "long.npy")

    let result = try runWithPolicyChosen(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains("differ in length"))
    #expect(result.error.contains("--policy-chosen \(path) has 4"))
    #expect(result.error.contains("--policy-rejected"))
    #expect(result.error.contains("has 3"))
    #expect(!directory.contains("out"))
  }

  @Test("empty arrays are rejected")
  func emptyArraysAreRejected() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let empty = try directory.writeNumPy([], to: "empty.npy")
    let arguments = [
      "--policy-chosen", empty, "--policy-rejected", empty,
      "--reference-chosen", empty, "--reference-rejected", empty,
      "--per-example", directory.file("out"),
    ]

    let result = runInProcess(arguments)

    #expect(result.status == 1)
    #expect(result.error.contains(empty))
    #expect(result.error.contains("empty"))
    #expect(!directory.contains("out"))
  }

  @Test("float32 input is accepted")
  func float32InputIsAccepted() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let values: [Float] = [-10.5, -22.25, -7.0]
    let bytes = numPyBytes(
      descr: "<f4",
      shape: "(3,)",
      data: float32Bytes(values)
    )
    let path = try directory.write(bytes, to: "single.npy")

    let result = try runWithPolicyChosen(path, in: directory)

    #expect(result.status == 0, "\(result.error)")
    #expect(directory.contains("out/losses.npy"))
  }
}

/// Invalid CSV and TSV tables given with `--table`.
@Suite("Table errors")
struct TableErrorTests {
  private static let header =
    "policy_chosen,policy_rejected,reference_chosen,reference_rejected\n"

  private func runTable(
    _ text: String,
    name: String = "batch.csv",
    in directory: TemporaryDirectory
  ) throws -> (path: String, result: CommandResult) {
    let path = try directory.write(text, to: name)
    let out = directory.file("out.csv")
    return (path, runInProcess(["--table", path, "--per-example", out]))
  }

  @Test("missing column is named")
  func missingColumnIsNamed() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let text = "policy_chosen,policy_rejected,reference_chosen\n-1,-2,-3\n"

    let (path, result) = try runTable(text, in: directory)

    #expect(result.status == 1)
    #expect(result.output.isEmpty)
    #expect(result.error.contains(path))
    #expect(result.error.contains("missing column 'reference_rejected'"))
    #expect(!directory.contains("out.csv"))
  }

  @Test("non-numeric cell is located")
  func nonNumericCellIsLocated() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let text = Self.header + "-1,-2,-3,-4\n-1,oops,-3,-4\n"

    let (path, result) = try runTable(text, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains("\(path):3:"))
    #expect(result.error.contains("column 2"))
    #expect(result.error.contains("'oops'"))
    #expect(!directory.contains("out.csv"))
  }

  @Test("ragged row is reported")
  func raggedRowIsReported() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let text = Self.header + "-1,-2,-3,-4\n-1,-2,-3\n"

    let (path, result) = try runTable(text, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains("\(path):3:"))
    #expect(result.error.contains("3 fields"))
    #expect(result.error.contains("has 4"))
    #expect(!directory.contains("out.csv"))
  }

  @Test("header without rows is rejected")
  func headerWithoutRowsIsRejected() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")

    let (path, result) = try runTable(Self.header, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains(path))
    #expect(result.error.contains("no data rows"))
  }

  @Test("quoted text column is read")
  func quotedTextColumnIsRead() throws {
    // pandas' to_csv quotes a text field that contains the delimiter, a
    // quote or a line break.
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let text =
      "prompt,policy_chosen,policy_rejected,reference_chosen,"
      + "reference_rejected\n"
      + "\"Say \"\"hi\"\", then\nleave\",-1,-2,-1,-2\n"
      + "plain,-1,-2,-1,-2\n"

    let (_, result) = try runTable(text, in: directory)

    #expect(result.status == 0, "\(result.error)")
    #expect(result.output.contains("pairs (n)"))
    #expect(directory.contains("out.csv"))
  }

  @Test("overflowing table cell is located")
  func overflowingTableCellIsLocated() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let text = Self.header + "-1,-2,-3,-4\n-1,-2,1e400,-4\n"

    let (path, result) = try runTable(text, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains("\(path):3: column 3"))
    #expect(result.error.contains("'1e400'"))
    #expect(result.error.contains("outside the range of a double"))
    #expect(!directory.contains("out.csv"))
  }

  @Test("hexadecimal table cell is rejected")
  func hexadecimalTableCellIsRejected() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let text = Self.header + "-1,-0x1p1,-3,-4\n"

    let (path, result) = try runTable(text, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains("\(path):2: column 2"))
    #expect(result.error.contains("decimal notation (-0x1p1 is -2.0)."))
  }

  @Test("TSV table is read")
  func tsvTableIsRead() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let text =
      "chosen_logps\trejected_logps\tref_chosen_logps\t"
      + "ref_rejected_logps\n-1\t-2\t-1\t-2\n"

    let (_, result) = try runTable(text, name: "batch.tsv", in: directory)

    #expect(result.status == 0, "\(result.error)")
    #expect(result.output.contains("pairs (n)"))
  }
}

/// Invalid `--weights` files.
@Suite("Weights errors")
struct WeightsErrorTests {
  private func runWithWeights(
    _ weightsPath: String,
    in directory: TemporaryDirectory
  ) throws -> CommandResult {
    let inputs = try SampleBatch.standard.writeNumPy(in: directory)
    return runInProcess(
      inputs + [
        "--weights", weightsPath, "--per-example", directory.file("out"),
      ]
    )
  }

  @Test("weights length mismatch is reported")
  func weightsLengthMismatchIsReported() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = try directory.writeNumPy([1, 1], to: "w.npy")

    let result = try runWithWeights(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains(path))
    #expect(result.error.contains("2 weights for 3 preference pairs"))
    #expect(!directory.contains("out"))
  }

  @Test("negative npy weight is located")
  func negativeNumPyWeightIsLocated() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = try directory.writeNumPy([1, -0.5, 1], to: "w.npy")

    let result = try runWithWeights(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains(path))
    #expect(result.error.contains("invalid weight -0.5 at index 1"))
    #expect(!directory.contains("out"))
  }

  @Test("NaN text weight is located")
  func nanTextWeightIsLocated() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = try directory.write("weight\n1\nnan\n1\n", to: "w.csv")

    let result = try runWithWeights(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains(path))
    #expect(result.error.contains("invalid weight nan at line 3"))
  }

  @Test("non-numeric text weight is located")
  func nonNumericTextWeightIsLocated() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = try directory.write("1\n\n1\nheavy\n", to: "w.txt")

    let result = try runWithWeights(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains("\(path):4:"))
    #expect(result.error.contains("'heavy' is not a number"))
  }

  @Test("second column is rejected")
  func secondColumnIsRejected() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = try directory.write("index,weight\n0,1\n1,1\n2,1\n", to: "w.csv")

    let result = try runWithWeights(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains("\(path):1:"))
    #expect(result.error.contains("2 fields"))
    #expect(result.error.contains("one column"))
  }

  @Test("all-zero weights are rejected")
  func allZeroWeightsAreRejected() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = try directory.write("0\n0\n0\n", to: "w.tsv")

    let result = try runWithWeights(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains(path))
    #expect(result.error.contains("every weight is 0"))
  }

  @Test(
    "overflowing text weight is located",
    arguments: [
      "1e400", "1.7976931348623159e308", String(repeating: "9", count: 5000),
    ]
  )
  func overflowingTextWeightIsLocated(weight: String) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = try directory.write("weight\n1\n\(weight)\n1\n", to: "w.csv")

    let result = try runWithWeights(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains("\(path):3:"))
    #expect(result.error.contains("'\(weight.prefix(37))"))
    #expect(result.error.contains("outside the range of a double"))
    #expect(!directory.contains("out"))
  }

  @Test("hexadecimal text weight is rejected")
  func hexadecimalTextWeightIsRejected() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = try directory.write("1\n0x1p-3\n1\n", to: "w.txt")

    let result = try runWithWeights(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains("\(path):2:"))
    #expect(result.error.contains("'0x1p-3' is a hexadecimal float"))
    #expect(result.error.contains("decimal notation (0x1p-3 is 0.125)."))
  }

  @Test(
    "numeric first line is no header",
    arguments: [
      ("1_0", ":1: '1_0' is not a number"), ("#1", ":1: '#1' is not a"),
      ("-", ":1: '-' is not a"), ("_weight", ":1: '_weight' is not a"),
      ("\"1 0\"", ":1: '1 0' is not a"),
      ("nan", ": invalid weight nan at line 1"),
      ("-Inf", ": invalid weight -Inf at line 1"),
    ]
  )
  func numericFirstLineIsNoHeader(firstLine: String, problem: String) throws {
    // The file has one line per pair, so skipping the first as a header
    // would give 2 weights for 3 pairs.
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = try directory.write("\(firstLine)\n1\n1\n", to: "w.txt")

    let result = try runWithWeights(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains(path + problem), "\(result.error)")
  }

  @Test(
    "header first line is skipped",
    arguments: ["weight", "\"weight\"", "  w_1", "Gewicht", "\"w", "e5"]
  )
  func headerFirstLineIsSkipped(firstLine: String) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = try directory.write("\(firstLine)\n1\n2\n1\n", to: "w.txt")

    let result = try runWithWeights(path, in: directory)

    #expect(result.status == 0, "\(result.error)")
  }

  @Test("quoted first weight is read")
  func quotedFirstWeightIsRead() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = try directory.write("\"2\"\n\"1\"\n1\n", to: "w.csv")

    let result = try runWithWeights(path, in: directory)

    #expect(result.status == 0, "\(result.error)")
  }

  @Test(
    "weight sum overflow names file",
    arguments: ["w.npy", "w.csv"]
  )
  func weightSumOverflowNamesFile(name: String) throws {
    // Each weight is finite, but 1e308 + 1e308 overflows.
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let weights = [1e308, 1e308, 1]
    let path =
      name.hasSuffix(".npy")
      ? try directory.writeNumPy(weights, to: name)
      : try directory.write("1e308\n1e308\n1\n", to: name)

    let result = try runWithWeights(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.hasPrefix("dpo-loss: error: \(path): "))
    #expect(result.error.contains("sum to infinity"))
    #expect(result.error.contains("the largest is 1e+308"))
    #expect(!directory.contains("out"))
  }

  @Test("missing weights file is reported")
  func missingWeightsFileIsReported() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let path = directory.file("absent.csv")

    let result = try runWithWeights(path, in: directory)

    #expect(result.status == 1)
    #expect(result.error.contains(path))
    #expect(result.error.contains("file not found"))
    #expect(!directory.contains("out"))
  }
}

/// Invalid `--per-example` destinations, rejected before any input is read.
@Suite("Per-example destination errors")
struct PerExampleDestinationErrorTests {
  @Test("directory path that is file")
  func directoryPathThatIsFile() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try SampleBatch.standard.writeNumPy(in: directory)
    let out = try directory.write("keep me\n", to: "out")

    let result = runInProcess(inputs + ["--per-example", out])
    let contents = try String(contentsOfFile: out, encoding: .utf8)

    #expect(result.status == 1)
    #expect(result.error.contains(out))
    #expect(result.error.contains("existing file"))
    #expect(contents == "keep me\n")
  }

  @Test("table path that is directory")
  func tablePathThatIsDirectory() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try SampleBatch.standard.writeNumPy(in: directory)
    let out = directory.file("results.csv")
    try FileManager.default.createDirectory(
      atPath: out,
      withIntermediateDirectories: false
    )

    let result = runInProcess(inputs + ["--per-example", out])

    #expect(result.status == 1)
    #expect(result.error.contains(out))
    #expect(result.error.contains("existing directory"))
  }

  @Test("table in missing directory")
  func tableInMissingDirectory() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try SampleBatch.standard.writeNumPy(in: directory)
    let out = directory.file("absent/results.csv")

    let result = runInProcess(inputs + ["--per-example", out])

    #expect(result.status == 1)
    #expect(result.output.isEmpty)
    #expect(result.error.contains(out))
    #expect(!directory.contains("absent"))
  }
}
