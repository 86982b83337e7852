// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossTestSupport
import Foundation
import Testing

/// Successful runs: the JSON and text reports and the per-example files,
/// checked against the formulas evaluated in the test.
@Suite("Command output")
struct OutputTests {
  private let batch = SampleBatch.standard

  /// The DPO loss of small batches is accurate to a few ulp, so 1e-15
  /// relative separates rounding from a wrong formula.
  private let tolerance = 1e-15

  private func isClose(_ observed: Double?, _ expected: Double) -> Bool {
    guard let observed else {
      return false
    }
    return abs(observed - expected) <= tolerance * max(abs(expected), 1e-300)
  }

  @Test("JSON report has every key")
  func jsonReportHasEveryKey() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try batch.writeNumPy(in: directory)

    let result = runInProcess(inputs + ["--json"])
    let report = try parseReport(result.output)
    let expectedKeys = Set(
      metricKeys + [
        "n", "beta", "strategy", "load_seconds", "compute_seconds",
      ]
    )

    #expect(result.status == 0, "\(result.error)")
    #expect(result.error.isEmpty)
    #expect(Set(report.keys) == expectedKeys)
    #expect(report["n"] as? Int == 3)
    #expect(report["strategy"] as? String == "fused")
    #expect(try #require(jsonDouble(report["load_seconds"])) >= 0)
    #expect(try #require(jsonDouble(report["compute_seconds"])) >= 0)
  }

  @Test("JSON metrics match formulas")
  func jsonMetricsMatchFormulas() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try batch.writeNumPy(in: directory)
    let beta = 0.5

    let result = runInProcess(inputs + ["--json", "--beta", "0.5"])
    let report = try parseReport(result.output)

    let n = Double(batch.count)
    let loss =
      (0..<batch.count).map { batch.loss($0, beta: beta) }
      .reduce(0, +) / n
    let chosen = (0..<batch.count).map {
      beta * (batch.policyChosen[$0] - batch.referenceChosen[$0])
    }
    let rejected = (0..<batch.count).map {
      beta * (batch.policyRejected[$0] - batch.referenceRejected[$0])
    }
    let correct = zip(chosen, rejected).filter { $0 > $1 }.count

    #expect(result.status == 0, "\(result.error)")
    #expect(isClose(jsonDouble(report["loss"]), loss))
    #expect(
      isClose(jsonDouble(report["rewards/chosen"]), chosen.reduce(0, +) / n)
    )
    #expect(
      isClose(jsonDouble(report["rewards/rejected"]), rejected.reduce(0, +) / n)
    )
    #expect(
      isClose(
        jsonDouble(report["rewards/margins"]),
        zip(chosen, rejected).map(-).reduce(0, +) / n
      )
    )
    #expect(jsonDouble(report["rewards/accuracies"]) == Double(correct) / n)
    #expect(
      isClose(
        jsonDouble(report["logps/chosen"]),
        batch.policyChosen.reduce(0, +) / n
      )
    )
    #expect(
      isClose(
        jsonDouble(report["logps/rejected"]),
        batch.policyRejected.reduce(0, +) / n
      )
    )
    #expect(jsonDouble(report["beta"]) == 0.5)
  }

  @Test("text report lists metrics")
  func textReportListsMetrics() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try batch.writeNumPy(in: directory)

    let result = runInProcess(inputs + ["--strategy", "blas"])
    let lines = result.output.split(separator: "\n").map(String.init)
    let names = lines.map { $0.split(separator: " ").first.map(String.init) }

    #expect(result.status == 0, "\(result.error)")
    for key in metricKeys {
      #expect(names.contains(key), "missing \(key) in \(lines)")
    }
    let pairsLine = lines.first { $0.hasPrefix("pairs (n)") }
    let strategyLine = lines.first { $0.hasPrefix("strategy") }
    let loadLine = lines.first { $0.hasPrefix("load time") }
    let computeLine = lines.first { $0.hasPrefix("compute time") }
    #expect(pairsLine?.hasSuffix(" 3") == true, "\(lines)")
    #expect(strategyLine?.hasSuffix(" blas") == true, "\(lines)")
    #expect(loadLine?.hasSuffix(" s") == true, "\(lines)")
    #expect(computeLine?.hasSuffix(" s") == true, "\(lines)")
    #expect(!lines.contains { $0.hasPrefix("write time") })
  }

  @Test("strategies give equal reports")
  func strategiesGiveEqualReports() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try batch.writeNumPy(in: directory)

    let blas = try parseReport(
      runInProcess(inputs + ["--json", "--strategy", "blas"]).output
    )
    let fused = try parseReport(
      runInProcess(inputs + ["--json", "--strategy", "fused"]).output
    )

    for key in metricKeys {
      #expect(jsonDouble(blas[key]) == jsonDouble(fused[key]), "\(key)")
    }
  }

  @Test("table input matches npy input")
  func tableInputMatchesNumPyInput() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try batch.writeNumPy(in: directory)
    let table = try batch.writeTable(in: directory)

    let fromNumPy = try parseReport(runInProcess(inputs + ["--json"]).output)
    let tableResult = runInProcess(["--table", table, "--json"])
    let fromTable = try parseReport(tableResult.output)

    #expect(tableResult.status == 0, "\(tableResult.error)")
    for key in metricKeys {
      #expect(
        jsonDouble(fromTable[key]) == jsonDouble(fromNumPy[key]),
        "\(key)"
      )
    }
  }

  @Test("non-finite values are JSON strings")
  func nonFiniteValuesAreJSONStrings() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    var extreme = batch
    // delta = -inf in pair 0 would make the loss +inf, but the NaN in
    // pair 1 makes the loss and the rejected log-prob mean NaN.
    extreme.policyChosen[0] = -.infinity
    extreme.policyRejected[1] = .nan
    let inputs = try extreme.writeNumPy(in: directory)

    let result = runInProcess(inputs + ["--json"])
    let report = try parseReport(result.output)

    #expect(result.status == 0, "\(result.error)")
    #expect(report["loss"] as? String == "NaN")
    #expect(report["logps/chosen"] as? String == "-Infinity")
    #expect(report["logps/rejected"] as? String == "NaN")
    #expect(!result.output.contains("nan"))
    #expect(!result.output.contains("inf"))
  }

  @Test("infinite loss is JSON string")
  func infiniteLossIsJSONString() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    var extreme = batch
    extreme.policyChosen[0] = -.infinity

    let result = runInProcess(
      try extreme.writeNumPy(in: directory) + ["--json"]
    )
    let report = try parseReport(result.output)

    #expect(result.status == 0, "\(result.error)")
    #expect(report["loss"] as? String == "Infinity")
    #expect(report["rewards/chosen"] as? String == "-Infinity")
  }
}

/// Successful `--per-example` and `--weights` runs.
@Suite("Per-example output")
struct PerExampleOutputTests {
  private let batch = SampleBatch.standard
  private let beta = 0.1

  @Test("directory gets five npy files")
  func directoryGetsFiveNumPyFiles() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try batch.writeNumPy(in: directory)
    let out = directory.file("nested/out")

    let result = runInProcess(inputs + ["--per-example", out, "--json"])
    let report = try parseReport(result.output)
    let entries = try FileManager.default.contentsOfDirectory(atPath: out)

    #expect(result.status == 0, "\(result.error)")
    #expect(Set(entries) == Set(perExampleNames.map { "\($0).npy" }))
    #expect(try #require(jsonDouble(report["write_seconds"])) >= 0)

    let losses = try readNumPy("\(out)/losses.npy")
    let chosenRewards = try readNumPy("\(out)/chosen_rewards.npy")
    let gradChosen = try readNumPy("\(out)/grad_policy_chosen.npy")
    let gradRejected = try readNumPy("\(out)/grad_policy_rejected.npy")
    for i in 0..<batch.count {
      let loss = batch.loss(i, beta: beta)
      let gradient = batch.chosenGradient(i, beta: beta)
      let reward = beta * (batch.policyChosen[i] - batch.referenceChosen[i])
      #expect(abs(losses[i] - loss) <= 1e-15 * loss, "pair \(i)")
      #expect(chosenRewards[i] == reward, "pair \(i)")
      #expect(
        abs(gradChosen[i] - gradient) <= 1e-15 * abs(gradient),
        "pair \(i)"
      )
      #expect(gradRejected[i] == -gradChosen[i], "pair \(i)")
    }
  }

  @Test("CSV file has five columns")
  func csvFileHasFiveColumns() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try batch.writeNumPy(in: directory)
    let out = directory.file("pairs.csv")

    let result = runInProcess(inputs + ["--per-example", out])
    let text = try String(contentsOfFile: out, encoding: .utf8)
    let lines = text.split(separator: "\n").map(String.init)

    #expect(result.status == 0, "\(result.error)")
    #expect(lines.first == perExampleNames.joined(separator: ","))
    #expect(lines.count == batch.count + 1)
    let firstLoss = Double(lines[1].split(separator: ",")[0])
    #expect(firstLoss == (try readLossOfFirstPair(inputs)))
    #expect(result.output.contains("write time"))
  }

  /// Returns the first per-pair loss as the `.npy` output writes it.
  private func readLossOfFirstPair(_ inputs: [String]) throws -> Double {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let out = directory.file("out")
    _ = runInProcess(inputs + ["--per-example", out])
    return try readNumPy("\(out)/losses.npy")[0]
  }

  @Test("zero weight masks NaN pair")
  func zeroWeightMasksNaNPair() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    var masked = batch
    masked.policyChosen[1] = .nan
    let inputs = try masked.writeNumPy(in: directory)
    let weights = try directory.write("weight\n1\n0\n1\n", to: "w.csv")
    let out = directory.file("out")

    let result = runInProcess(
      inputs + ["--weights", weights, "--json", "--per-example", out]
    )
    let report = try parseReport(result.output)
    let expectedLoss =
      (batch.loss(0, beta: beta) + batch.loss(2, beta: beta))
      / 2
    let gradient = try readNumPy("\(out)/grad_policy_chosen.npy")
    // With the weights (1, 0, 1), pair 0 gets w_0 / sum w = 1/2 of its
    // gradient term, where the unweighted gradient has 1/3.
    let expectedGradient = batch.chosenGradient(0, beta: beta) * 3 / 2

    #expect(result.status == 0, "\(result.error)")
    let loss = try #require(jsonDouble(report["loss"]))
    #expect(abs(loss - expectedLoss) <= 1e-15 * expectedLoss)
    #expect(report["n"] as? Int == 3)
    #expect(gradient[1] == 0)
    #expect(abs(gradient[0] - expectedGradient) <= 1e-15 * abs(gradient[0]))
  }

  @Test("npy weights scale the loss")
  func numPyWeightsScaleTheLoss() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try batch.writeNumPy(in: directory)
    let weights = try directory.writeNumPy([2, 1, 1], to: "w.npy")

    let result = runInProcess(inputs + ["--weights", weights, "--json"])
    let report = try parseReport(result.output)
    let losses = (0..<3).map { batch.loss($0, beta: beta) }
    let expected = (2 * losses[0] + losses[1] + losses[2]) / 4

    #expect(result.status == 0, "\(result.error)")
    let loss = try #require(jsonDouble(report["loss"]))
    #expect(abs(loss - expected) <= 1e-15 * expected)
  }

  @Test("existing files are replaced")
  func existingFilesAreReplaced() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try batch.writeNumPy(in: directory)
    let out = directory.file("out")
    try FileManager.default.createDirectory(
      atPath: out,
      withIntermediateDirectories: false
    )
    try directory.writeNumPy([1, 2, 3, 4, 5], to: "out/losses.npy")
    try directory.write("unrelated\n", to: "out/notes.txt")

    let result = runInProcess(inputs + ["--per-example", out])

    #expect(result.status == 0, "\(result.error)")
    #expect(try readNumPy("\(out)/losses.npy").count == batch.count)
    #expect(directory.contains("out/notes.txt"))
  }

  @Test("failed write keeps old outputs")
  func failedWriteKeepsOldOutputs() throws {
    // The last of the five files cannot replace a directory, so the run
    // fails after writing the other four.
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try batch.writeNumPy(in: directory)
    let out = directory.file("out")
    let blocked = "\(out)/grad_policy_rejected.npy"
    try FileManager.default.createDirectory(
      atPath: blocked,
      withIntermediateDirectories: true
    )
    try directory.writeNumPy([1, 2, 3, 4, 5], to: "out/losses.npy")
    try directory.writeNumPy([6, 7], to: "out/chosen_rewards.npy")

    let result = runInProcess(inputs + ["--per-example", out])
    let entries = try FileManager.default.contentsOfDirectory(atPath: out)

    #expect(result.status == 1)
    #expect(result.output.isEmpty)
    #expect(result.error.contains(blocked), "\(result.error)")
    #expect(result.error.contains("directory"), "\(result.error)")
    #expect(try readNumPy("\(out)/losses.npy") == [1, 2, 3, 4, 5])
    #expect(try readNumPy("\(out)/chosen_rewards.npy") == [6, 7])
    #expect(
      Set(entries)
        == ["losses.npy", "chosen_rewards.npy", "grad_policy_rejected.npy"],
      "temporary files left: \(entries)"
    )
  }

  @Test("tiny weights give finite gradients")
  func tinyWeightsGiveFiniteGradients() throws {
    // The weights sum to 2e-320, a subnormal: 1 / 2e-320 overflows, so
    // w_i / W must not be formed as w_i * (1 / W).
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let inputs = try batch.writeNumPy(in: directory)
    let tiny = 2024 * Double.leastNonzeroMagnitude  // 1e-320
    let weights = try directory.writeNumPy([tiny, tiny, 0], to: "w.npy")
    let out = directory.file("pairs.csv")

    let result = runInProcess(
      inputs + ["--weights", weights, "--per-example", out]
    )
    let rows = try readCSV(out)

    try #require(result.status == 0, "\(result.error)")
    try #require(rows.count == batch.count)
    for column in ["grad_policy_chosen", "grad_policy_rejected"] {
      for (pair, row) in rows.enumerated() {
        let gradient = try #require(row[column], "\(column) missing")
        #expect(gradient.isFinite, "\(column), pair \(pair): \(gradient)")
      }
      #expect(rows[2][column] == 0, "\(column) of the masked pair")
    }
    // Equal weights on pairs 0 and 1 give each half of its gradient term.
    let expected = batch.chosenGradient(0, beta: beta) * 3 / 2
    let gradient = try #require(rows[0]["grad_policy_chosen"])
    #expect(abs(gradient - expected) <= 1e-15 * abs(expected), "\(gradient)")
  }
}

/// Reads a CSV file that `--per-example` wrote and returns one dictionary
/// of values by column name per row.
private func readCSV(_ path: String) throws -> [[String: Double]] {
  let text = try String(contentsOfFile: path, encoding: .utf8)
  let lines = text.split(separator: "\n").map {
    $0.split(separator: ",", omittingEmptySubsequences: false)
  }
  guard let header = lines.first else {
    return []
  }
  return lines.dropFirst().map { fields in
    var row: [String: Double] = [:]
    for (name, field) in zip(header, fields) {
      row[String(name)] = Double(field)
    }
    return row
  }
}
