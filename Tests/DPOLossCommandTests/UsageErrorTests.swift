// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossTestSupport
import Foundation
import Testing

/// Invalid arguments: each run must exit with status 2, print nothing to
/// standard output, and name the option in its message.
@Suite("Usage errors")
struct UsageErrorTests {
  /// Runs the command on the standard batch with `extra` arguments added.
  private func runWithBatch(_ extra: [String]) throws -> CommandResult {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try SampleBatch.standard.writeNumPy(in: directory)
    return runInProcess(inputs + extra)
  }

  @Test(
    "invalid beta is rejected",
    arguments: [
      ("nan", "finite"), ("-0.5", "non-negative"), ("inf", "finite"),
      ("abc", "not a number"), ("0.1x", "not a number"),
      ("1e400", "outside the range"), ("-1e400", "outside the range"),
      ("0x1p-3", "hexadecimal"), (" 0.1", "not a number"),
    ]
  )
  func invalidBetaIsRejected(value: String, problem: String) throws {
    let result = try runWithBatch(["--beta", value])

    #expect(result.status == 2)
    #expect(result.output.isEmpty)
    #expect(result.error.contains("--beta"))
    #expect(result.error.contains("'\(value)'"))
    #expect(result.error.contains(problem))
  }

  @Test("hexadecimal beta shows decimal")
  func hexadecimalBetaShowsDecimal() throws {
    let result = try runWithBatch(["--beta", "0x1p-3"])

    #expect(result.status == 2)
    #expect(result.error.contains("decimal notation (0x1p-3 is 0.125)."))
  }

  @Test("underflowing beta becomes zero")
  func underflowingBetaBecomesZero() throws {
    let result = try runWithBatch(["--beta", "1e-400", "--json"])
    let report = try parseReport(result.output)

    #expect(result.status == 0, "\(result.error)")
    #expect(jsonDouble(report["beta"]) == 0)
  }

  @Test("beta with equals sign parses")
  func betaWithEqualsSignParses() throws {
    let result = try runWithBatch(["--beta=0.25", "--json"])
    let report = try parseReport(result.output)

    #expect(result.status == 0)
    #expect(jsonDouble(report["beta"]) == 0.25)
  }

  @Test("unknown strategy is rejected")
  func unknownStrategyIsRejected() throws {
    let result = try runWithBatch(["--strategy", "simd"])

    #expect(result.status == 2)
    #expect(result.error.contains("unknown strategy 'simd'"))
    #expect(result.error.contains("blas"))
    #expect(result.error.contains("fused"))
  }

  @Test(
    "unknown option is rejected",
    arguments: ["--betta", "-b", "--json=yes"]
  )
  func unknownOptionIsRejected(option: String) throws {
    let result = try runWithBatch([option])

    #expect(result.status == 2)
    #expect(result.output.isEmpty)
    #expect(result.error.contains(option))
  }

  @Test(
    "missing option value is rejected",
    arguments: [
      ["--beta"], ["--weights", "--json"], ["--strategy="],
      ["--per-example"],
    ]
  )
  func missingOptionValueIsRejected(arguments: [String]) throws {
    let result = try runWithBatch(arguments)
    let option = arguments[0].split(separator: "=")[0]

    #expect(result.status == 2)
    #expect(result.error.contains("missing value for \(option)"))
  }

  @Test("repeated option is rejected")
  func repeatedOptionIsRejected() throws {
    let result = try runWithBatch(["--beta", "0.1", "--beta", "0.2"])

    #expect(result.status == 2)
    #expect(result.error.contains("--beta is given more than once"))
  }

  @Test("positional argument is rejected")
  func positionalArgumentIsRejected() throws {
    let result = try runWithBatch(["extra.npy"])

    #expect(result.status == 2)
    #expect(result.error.contains("unexpected argument 'extra.npy'"))
  }

  @Test("table with npy options rejected")
  func tableWithNumPyOptionsRejected() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let table = try SampleBatch.standard.writeTable(in: directory)
    let pc = try directory.writeNumPy([-1], to: "pc.npy")

    let result = runInProcess(["--table", table, "--policy-chosen", pc])

    #expect(result.status == 2)
    #expect(result.error.contains("--table cannot be combined"))
    #expect(result.error.contains("--policy-chosen"))
  }

  @Test("missing inputs are rejected")
  func missingInputsAreRejected() {
    let result = runInProcess(["--json"])

    #expect(result.status == 2)
    #expect(result.output.isEmpty)
    #expect(result.error.contains("missing inputs"))
    #expect(result.error.contains("--table"))
  }

  @Test("partial npy inputs are named")
  func partialNumPyInputsAreNamed() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let pc = try directory.writeNumPy([-1], to: "pc.npy")
    let pr = try directory.writeNumPy([-2], to: "pr.npy")

    let result = runInProcess(["--policy-chosen", pc, "--policy-rejected", pr])

    #expect(result.status == 2)
    #expect(
      result.error.contains("missing --reference-chosen, --reference-rejected.")
    )
  }

  @Test("usage error suggests help")
  func usageErrorSuggestsHelp() {
    let result = runInProcess([])

    #expect(result.status == 2)
    #expect(result.error.hasPrefix("dpo-loss: error: "))
    #expect(result.error.contains("dpo-loss --help"))
  }
}

@Suite("Help text")
struct HelpTextTests {
  @Test("help lists every option", arguments: ["--help", "-h"])
  func helpListsEveryOption(flag: String) {
    let result = runInProcess(["--beta", "nan", flag])
    let options = [
      "--policy-chosen", "--policy-rejected", "--reference-chosen",
      "--reference-rejected", "--table", "--beta", "--weights",
      "--strategy", "--json", "--per-example", "--help",
    ]

    #expect(result.status == 0)
    #expect(result.error.isEmpty)
    for option in options {
      #expect(result.output.contains(option), "missing \(option)")
    }
  }

  @Test("help states defaults and statuses")
  func helpStatesDefaultsAndStatuses() {
    let help = runInProcess(["--help"]).output

    #expect(help.contains("Default: 0.1."))
    #expect(help.contains("Default: fused."))
    #expect(help.contains("EXIT STATUS"))
    #expect(help.contains("0  Success."))
    #expect(help.contains("1  An input file"))
    #expect(help.contains("2  Usage error"))
    #expect(help.contains("nats"))
    #expect(help.contains("seconds"))
    for name in perExampleNames {
      #expect(help.contains(name), "missing \(name)")
    }
  }

  @Test("help fits 80 columns")
  func helpFitsEightyColumns() {
    let help = runInProcess(["--help"]).output
    let longLines = help.split(separator: "\n").filter { $0.count > 80 }

    #expect(longLines.isEmpty, "\(longLines)")
  }
}
