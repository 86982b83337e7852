// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossFiles
import DPOLossTestSupport
import Foundation
import Testing

private let trlFixtures = TRLFixtures.directory.path
private let trlFixturesFound = TRLFixtures.exist
private let runsTRLTests = TRLFixtures.runTests
private let fixturesRequiredMessage = Comment(
  rawValue: TRLFixtures.requiredMessage
)

/// Returns the paths, relative to the fixtures folder, of the `case.json`
/// files that match `parent/*/case.json` with a directory name that
/// starts with `prefix`, sorted.
private func caseFiles(under parent: String, prefix: String) -> [String] {
  let directory = "\(trlFixtures)/\(parent)"
  let names =
    (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
  return names.sorted().filter { $0.hasPrefix(prefix) }.map {
    "\(parent)/\($0)/case.json"
  }.filter {
    FileManager.default.fileExists(atPath: "\(trlFixtures)/\($0)")
  }
}

/// `cases/trl-1.16.0/<set>/sigmoid__b0.1__ls0__<dtype>/case.json` for
/// every set and dtype.
private let scoringCases: [String] = {
  let root = "cases/trl-1.16.0"
  let sets =
    (try? FileManager.default.contentsOfDirectory(
      atPath: "\(trlFixtures)/\(root)"
    )) ?? []
  return sets.sorted().flatMap {
    caseFiles(under: "\(root)/\($0)", prefix: "sigmoid__b0.1__ls0__")
  }
}()

/// `train_run/step_*/case.json`.
private let trainingSteps = caseFiles(under: "train_run", prefix: "step_")

/// The `dpo-loss` executable that SwiftPM builds next to the test bundle.
private let commandURL: URL? = {
  let candidates = [
    URL(fileURLWithPath: CommandLine.arguments[0])
      .resolvingSymlinksInPath().deletingLastPathComponent(),
    Bundle.main.bundleURL,
  ]
  return candidates.map { $0.appendingPathComponent("dpo-loss") }.first {
    FileManager.default.isExecutableFile(atPath: $0.path)
  }
}()

private struct ExecutableNotFound: Error {}

/// Runs the built `dpo-loss` executable in a child process.
private func runExecutable(_ arguments: [String]) throws -> CommandResult {
  guard let url = commandURL else {
    let bundle = CommandLine.arguments[0]
    Issue.record(
      """
      dpo-loss not found next to the test bundle \(bundle). Build it with \
      `swift build`, or run `swift test`, which builds it.
      """
    )
    throw ExecutableNotFound()
  }
  let process = Process()
  process.executableURL = url
  process.arguments = arguments
  let output = Pipe()
  let error = Pipe()
  process.standardOutput = output
  process.standardError = error
  try process.run()
  // The reports are a few hundred bytes, far below the pipe capacity, so
  // reading after the exit cannot block the child.
  process.waitUntilExit()
  let outputData = output.fileHandleForReading.readDataToEndOfFile()
  let errorData = error.fileHandleForReading.readDataToEndOfFile()
  return CommandResult(
    status: process.terminationStatus,
    output: String(decoding: outputData, as: UTF8.self),
    error: String(decoding: errorData, as: UTF8.self)
  )
}

/// How closely the command must match TRL.
private enum Precision {
  /// TRL computed in float64: 1e-14 relative to each expected value. The
  /// kernel's softplus is accurate to a few ulp and its sums are
  /// compensated, and TRL's float64 torch code rounds a few times per value,
  /// so about 1e-15 is expected. The widest gap that dpo-loss shows on these
  /// fixtures is 4.4e-16.
  case float64

  /// TRL computed in float32 from float32 inputs, and the command computes
  /// in float64 from the same values widened exactly. The difference is
  /// TRL's rounding, so the bound is 1e-6 times the largest magnitude of
  /// the quantity (the array's largest |value|, or a metric's largest
  /// |term|).
  ///
  /// Derivation, an estimate rather than a proof: float32 has unit
  /// roundoff u = 2^-24 = 6.0e-8. Each value passes through fewer than 16
  /// float32 roundings. Delta and the rewards take two subtractions and a
  /// product by beta, softplus an exp and a log1p, and the gradient a
  /// sigmoid and the 1/n scale. A mean adds a pairwise sum. Each rounding
  /// errs by at most u times an intermediate no larger than the scale, and
  /// 16u = 9.5e-7, so 1e-6. The widest gap that dpo-loss shows on these
  /// fixtures is 1.1e-7 of the scale. `rewards/accuracies` must match
  /// exactly, because no pair's float32 rewards lie within rounding of a
  /// tie.
  case float32
}

/// One TRL run: the inputs and the results TRL computed from them.
private struct TRLExpectation {
  var inputs: [String]
  var beta: Double
  var loss: Double
  /// The metrics that the case records, by TRL log key.
  var metrics: [String: Double]
  /// Paths of the expected per-example arrays, by per-example output name.
  var perExample: [String: String]
  var precision: Precision
}

/// Returns the JSON object of a fixture file.
private func readJSONObject(_ relativePath: String) throws -> [String: Any] {
  let data = try Data(
    contentsOf: URL(fileURLWithPath: "\(trlFixtures)/\(relativePath)")
  )
  let object = try JSONSerialization.jsonObject(with: data)
  return try #require(object as? [String: Any], "\(relativePath)")
}

/// Returns the absolute paths of the four log-prob inputs in the order of
/// the command's options.
private func inputPaths(_ inputs: [String: Any]) throws -> [String] {
  try [
    "chosen_logps", "rejected_logps", "ref_chosen_logps",
    "ref_rejected_logps",
  ].map { key in
    let path = try #require(inputs[key] as? String, "missing input \(key)")
    return "\(trlFixtures)/\(path)"
  }
}

/// Returns the per-example outputs of an `expected` block by output name.
private func perExamplePaths(_ expected: [String: Any]) throws
  -> [String: String]
{
  let keys = [
    "losses": "losses", "chosen_rewards": "chosen_rewards",
    "rejected_rewards": "rejected_rewards",
    "grad_policy_chosen": "grad_chosen",
    "grad_policy_rejected": "grad_rejected",
  ]
  return try keys.mapValues { key in
    let path = try #require(expected[key] as? String, "missing \(key)")
    return "\(trlFixtures)/\(path)"
  }
}

/// Returns the numeric values of a metrics object, decoding NaN and
/// infinities from their strings.
private func metricValues(_ object: Any?) throws -> [String: Double] {
  let metrics = try #require(object as? [String: Any], "missing metrics")
  return try metrics.mapValues { value in
    try #require(jsonDouble(value), "metric \(value) is not a number")
  }
}

/// Reads a scoring case: its inputs, and TRL's results in the case's
/// compute dtype.
private func scoringExpectation(_ casePath: String) throws -> TRLExpectation {
  let object = try readJSONObject(casePath)
  let expected = try #require(object["expected"] as? [String: Any])
  let dtype = try #require(object["compute_dtype"] as? String)
  return TRLExpectation(
    inputs: try inputPaths(try #require(object["inputs"] as? [String: Any])),
    beta: try #require(jsonDouble(object["beta"])),
    loss: try #require(jsonDouble(expected["loss"])),
    metrics: try metricValues(expected["metrics"]),
    perExample: try perExamplePaths(expected),
    precision: dtype == "float64" ? .float64 : .float32
  )
}

/// Reads the float64 re-run of a training step: float64 inputs, and the
/// results of TRL's loss code run in float64.
private func float64StepExpectation(_ casePath: String) throws
  -> TRLExpectation
{
  let object = try readJSONObject(casePath)
  let expected = try #require(object["expected_float64"] as? [String: Any])
  return TRLExpectation(
    inputs: try inputPaths(try #require(object["inputs"] as? [String: Any])),
    beta: try #require(jsonDouble(object["beta"])),
    loss: try #require(jsonDouble(expected["loss"])),
    metrics: try metricValues(expected["metrics"]),
    perExample: try perExamplePaths(expected),
    precision: .float64
  )
}

/// Reads the training step as it ran: float32 `.npy` inputs, and the
/// results TRL computed in float32 inside the real backward pass.
private func float32StepExpectation(_ casePath: String) throws
  -> TRLExpectation
{
  let object = try readJSONObject(casePath)
  let expected = try #require(object["expected_native"] as? [String: Any])
  let logged = try #require(object["logged_metrics"] as? [String: Any])
  // The step records rewards metrics from the loss tensors, and the log-prob
  // means only in the trainer's log.
  var metrics = try metricValues(expected["metrics_from_tensors"])
  let chosenLogProb = try #require(jsonDouble(logged["logps/chosen"]))
  let rejectedLogProb = try #require(jsonDouble(logged["logps/rejected"]))
  metrics["logps/chosen"] = chosenLogProb
  metrics["logps/rejected"] = rejectedLogProb
  let nativeInputs = try #require(
    object["inputs_native_dtype"] as? [String: Any]
  )
  return TRLExpectation(
    inputs: try inputPaths(nativeInputs),
    beta: try #require(jsonDouble(object["beta"])),
    loss: try #require(jsonDouble(expected["loss"])),
    metrics: metrics,
    perExample: try perExamplePaths(expected),
    precision: .float32
  )
}

/// Returns whether `observed` is within `tolerance` of `expected`. NaN
/// matches only NaN, and an infinity only the same infinity.
private func matches(
  _ observed: Double,
  _ expected: Double,
  tolerance: Double
) -> Bool {
  if expected.isNaN || observed.isNaN {
    return expected.isNaN && observed.isNaN
  }
  if expected.isInfinite || observed.isInfinite {
    return observed == expected
  }
  return abs(observed - expected) <= tolerance
}

/// Returns a description of the first element outside its tolerance, or
/// `nil` if all match.
private func firstMismatch(
  _ observed: [Double],
  _ expected: [Double],
  tolerance: (Int) -> Double
) -> String? {
  for i in expected.indices
  where !matches(observed[i], expected[i], tolerance: tolerance(i)) {
    let gap = abs(observed[i] - expected[i])
    return "index \(i): observed \(observed[i]), expected \(expected[i]), "
      + "gap \(gap), tolerance \(tolerance(i))"
  }
  return nil
}

private func largestMagnitude(_ values: [Double]) -> Double {
  values.filter(\.isFinite).map(abs).max() ?? 0
}

/// Runs the executable on one TRL run with `--json` and `--per-example`
/// and checks the loss, every metric and every per-example array.
private func checkAgainstTRL(
  _ expectation: TRLExpectation,
  strategy: String = "fused"
) throws {
  let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
  let out = directory.file("per-example")
  let options = [
    "--policy-chosen", "--policy-rejected", "--reference-chosen",
    "--reference-rejected",
  ]
  var arguments = zip(options, expectation.inputs).flatMap { [$0, $1] }
  arguments += [
    "--beta", expectation.beta.description, "--strategy", strategy,
    "--json", "--per-example", out,
  ]

  let result = try runExecutable(arguments)
  try #require(result.status == 0, "exit \(result.status): \(result.error)")
  let report = try parseReport(result.output)

  var expectedArrays: [String: [Double]] = [:]
  for (name, path) in expectation.perExample {
    expectedArrays[name] = try readNumPy(path)
  }
  let count = try #require(expectedArrays["losses"]).count
  #expect(report["n"] as? Int == count)
  #expect(jsonDouble(report["beta"]) == expectation.beta)
  #expect(report["strategy"] as? String == strategy)

  // The scale of each quantity for the float32 bound.
  let policyChosen = try readNumPy(expectation.inputs[0])
  let policyRejected = try readNumPy(expectation.inputs[1])
  let chosenScale = largestMagnitude(expectedArrays["chosen_rewards"]!)
  let rejectedScale = largestMagnitude(expectedArrays["rejected_rewards"]!)
  let metricScales = [
    "loss": largestMagnitude(expectedArrays["losses"]!),
    "rewards/chosen": chosenScale,
    "rewards/rejected": rejectedScale,
    "rewards/margins": chosenScale + rejectedScale,
    "rewards/accuracies": 0,
    "logps/chosen": largestMagnitude(policyChosen),
    "logps/rejected": largestMagnitude(policyRejected),
  ]
  func tolerance(expected: Double, scale: Double) -> Double {
    switch expectation.precision {
    case .float64: 1e-14 * abs(expected)
    case .float32: 1e-6 * scale
    }
  }

  var expectedMetrics = expectation.metrics
  expectedMetrics["loss"] = expectation.loss
  for (key, expected) in expectedMetrics {
    let observed = try #require(jsonDouble(report[key]), "missing \(key)")
    let allowed = tolerance(expected: expected, scale: metricScales[key]!)
    #expect(
      matches(observed, expected, tolerance: allowed),
      "\(key): observed \(observed), expected \(expected), tolerance \(allowed)"
    )
  }

  for name in perExampleNames {
    let observed = try readNumPy("\(out)/\(name).npy")
    let expected = expectedArrays[name]!
    let scale = largestMagnitude(expected)
    try #require(observed.count == expected.count, "\(name) length")
    let mismatch = firstMismatch(observed, expected) { i in
      tolerance(expected: expected[i], scale: scale)
    }
    #expect(mismatch == nil, "\(name): \(mismatch ?? "")")
  }
}

@Suite(
  "dpo-loss against TRL",
  .enabled(
    if: runsTRLTests,
    Comment(rawValue: TRLFixtures.missingMessage)
  )
)
struct TRLEndToEndTests {
  @Test("fixture cases are present")
  func fixtureCasesArePresent() throws {
    try #require(trlFixturesFound, fixturesRequiredMessage)
    #expect(scoringCases.count >= 4, "\(scoringCases)")
    #expect(trainingSteps.count >= 16, "\(trainingSteps)")
  }

  @Test(
    "scoring cases match TRL",
    arguments: scoringCases,
    ["fused", "blas"]
  )
  func scoringCasesMatchTRL(casePath: String, strategy: String) throws {
    try checkAgainstTRL(try scoringExpectation(casePath), strategy: strategy)
  }

  @Test("float64 training steps match", arguments: trainingSteps)
  func float64TrainingStepsMatch(casePath: String) throws {
    try checkAgainstTRL(try float64StepExpectation(casePath))
  }

  @Test("float32 training steps match", arguments: trainingSteps)
  func float32TrainingStepsMatch(casePath: String) throws {
    try checkAgainstTRL(try float32StepExpectation(casePath))
  }
}

@Suite("dpo-loss executable")
struct ExecutableTests {
  @Test("usage error exits with 2")
  func usageErrorExitsWithTwo() throws {
    let result = try runExecutable(["--beta", "-1"])

    #expect(result.status == 2)
    #expect(result.output.isEmpty)
    #expect(result.error.contains("--beta"))
  }

  @Test("missing file exits with 1")
  func missingFileExitsWithOne() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossCommandTests")
    let table = directory.file("absent.csv")

    let result = try runExecutable(["--table", table])

    #expect(result.status == 1)
    #expect(result.error.contains("\(table): file not found"))
  }

  @Test("help exits with 0")
  func helpExitsWithZero() throws {
    let result = try runExecutable(["--help"])

    #expect(result.status == 0)
    #expect(result.output.hasPrefix("USAGE: dpo-loss"))
  }
}
