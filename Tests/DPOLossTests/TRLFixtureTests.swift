// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLoss
import DPOLossFiles
import DPOLossTestSupport
import Foundation
import Testing

// Inputs and expected results produced by Hugging Face TRL 1.16.0 (torch
// 2.15.0, CPU). TRL computes delta = (pc - rc) - (pr - rr) and
// loss = mean(softplus(-beta * delta)), so its float64 results must match
// this library to about 1e-15 relative.

/// Relative tolerance against TRL's float64 results.
private let trlTolerance = 1e-14

/// The folder of TRL's log-probs and results.
let fixtureDirectory = TRLFixtures.directory
let fixturesExist = TRLFixtures.exist
let runsFixtureTests = TRLFixtures.runTests
let fixturesRequiredMessage = Comment(rawValue: TRLFixtures.requiredMessage)
let missingFixturesMessage = Comment(rawValue: TRLFixtures.missingMessage)

/// Lists the subfolders of `relativePath` whose names start with `prefix`,
/// sorted, as paths relative to the fixture folder. Empty if the folder is
/// missing.
private func subfolders(of relativePath: String, prefix: String = "")
  -> [String]
{
  let url = fixtureDirectory.appendingPathComponent(relativePath)
  let names =
    (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
  return names.filter { $0.hasPrefix(prefix) }.sorted().map {
    relativePath + "/" + $0
  }
}

/// Folders `cases/trl-1.16.0/<set>/sigmoid__b0.1__ls0__float64`, one per set
/// of inputs that has a float64 case.
let float64Cases: [String] = subfolders(of: "cases/trl-1.16.0")
  .map { $0 + "/sigmoid__b0.1__ls0__float64" }
  .filter {
    FileManager.default.fileExists(
      atPath: fixtureDirectory.appendingPathComponent($0 + "/case.json").path
    )
  }

/// Folders `train_run/step_NN`, one per training step.
let trainingSteps: [String] = subfolders(
  of: "train_run",
  prefix: "step_"
)

// MARK: - Fixture files

/// A fixture file that is missing or not in the expected format.
struct FixtureError: Error, CustomStringConvertible {
  var description: String
}

/// Reads a 1-D float64 or float32 `.npy` fixture file as doubles.
func readFixtureArray(_ relativePath: String) throws -> [Double] {
  let url = fixtureDirectory.appendingPathComponent(relativePath)
  let array = try NumPyArray(contentsOf: url.path)
  return array.withSpan { span in
    (0..<span.count).map { span[$0] }
  }
}

/// Reads `case.json` in `folder` as a dictionary.
func readCase(_ folder: String) throws -> [String: Any] {
  let url = fixtureDirectory.appendingPathComponent(folder + "/case.json")
  let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url))
  guard let dictionary = object as? [String: Any] else {
    throw FixtureError(description: "\(url.path) is not a JSON object")
  }
  return dictionary
}

/// Returns the dictionary at `key`, or throws naming the missing key.
func dictionary(
  _ object: [String: Any],
  _ key: String,
  in folder: String
)
  throws -> [String: Any]
{
  guard let value = object[key] as? [String: Any] else {
    throw FixtureError(description: "\(folder)/case.json: missing \(key)")
  }
  return value
}

/// Returns the string at `key`, or throws naming the missing key.
func string(_ object: [String: Any], _ key: String, in folder: String)
  throws -> String
{
  guard let value = object[key] as? String else {
    throw FixtureError(description: "\(folder)/case.json: missing \(key)")
  }
  return value
}

/// Returns the number at `key`. JSON has no NaN or infinity, so the fixtures
/// write them as the strings "NaN", "Infinity" and "-Infinity".
func number(_ object: [String: Any], _ key: String, in folder: String)
  throws -> Double
{
  switch object[key] {
  case let value as NSNumber:
    return value.doubleValue
  case "NaN" as String:
    return .nan
  case "Infinity" as String:
    return .infinity
  case "-Infinity" as String:
    return -.infinity
  default:
    throw FixtureError(
      description: "\(folder)/case.json: \(key) is missing or not a number"
    )
  }
}

/// Reads the four input arrays that `inputs` names, with the key names TRL
/// uses.
func readBatch(_ inputs: [String: Any], in folder: String) throws
  -> Batch
{
  Batch(
    policyChosen: try readFixtureArray(
      string(inputs, "chosen_logps", in: folder)
    ),
    policyRejected: try readFixtureArray(
      string(inputs, "rejected_logps", in: folder)
    ),
    referenceChosen: try readFixtureArray(
      string(inputs, "ref_chosen_logps", in: folder)
    ),
    referenceRejected: try readFixtureArray(
      string(inputs, "ref_rejected_logps", in: folder)
    )
  )
}

/// One fixture: inputs, `beta` and TRL's float64 results.
private struct TRLExpectation {
  var batch: Batch
  var beta: Double
  var loss: Double
  var losses: [Double]

  /// Reads a case folder (`inputs`, `expected`) or a training step folder
  /// (`inputs` in float64, `expected_float64`).
  init(folder: String) throws {
    let json = try readCase(folder)
    let expectedKey =
      json["expected_float64"] == nil ? "expected" : "expected_float64"
    let expected = try dictionary(json, expectedKey, in: folder)
    batch = try readBatch(dictionary(json, "inputs", in: folder), in: folder)
    beta = try number(json, "beta", in: folder)
    loss = try number(expected, "loss", in: folder)
    losses = try readFixtureArray(string(expected, "losses", in: folder))
  }
}

// MARK: - Checks

/// Checks `observed` against TRL's `expected`: NaN for NaN, the same
/// infinity for an infinity, and `trlTolerance` relative otherwise.
func expectMatchesTRL(
  _ observed: Double,
  _ expected: Double,
  _ context: @autoclosure () -> String,
  sourceLocation: SourceLocation = #_sourceLocation
) {
  if expected.isNaN {
    #expect(
      observed.isNaN,
      "\(context()): expected nan, observed \(observed)",
      sourceLocation: sourceLocation
    )
  } else if expected.isInfinite {
    #expect(
      observed == expected,
      "\(context()): expected \(expected), observed \(observed)",
      sourceLocation: sourceLocation
    )
  } else {
    let error = relativeDifference(observed, expected)
    #expect(
      error <= trlTolerance,
      """
      \(context()): expected \(expected), observed \(observed), relative \
      error \(error)
      """,
      sourceLocation: sourceLocation
    )
  }
}

private func expectBatchLossMatches(_ folder: String) throws {
  let fixture = try TRLExpectation(folder: folder)
  for implementation in LossImplementation.allCases {
    let loss = try implementation.loss(fixture.batch, beta: fixture.beta)
    expectMatchesTRL(
      loss,
      fixture.loss,
      "\(folder), \(implementation), beta \(fixture.beta)"
    )
  }
}

private func expectPairLossesMatch(_ folder: String) throws {
  let fixture = try TRLExpectation(folder: folder)
  try #require(
    fixture.losses.count == fixture.batch.count,
    """
    \(folder): expected \(fixture.batch.count) per-pair losses, observed \
    \(fixture.losses.count)
    """
  )
  for index in 0..<fixture.batch.count {
    let loss = negativeLogSigmoid(fixture.beta * fixture.batch.delta(at: index))
    expectMatchesTRL(
      loss,
      fixture.losses[index],
      """
      \(folder), pair \(index) (pc \(fixture.batch.policyChosen[index]), \
      pr \(fixture.batch.policyRejected[index]), \
      rc \(fixture.batch.referenceChosen[index]), \
      rr \(fixture.batch.referenceRejected[index]))
      """
    )
  }
}

// MARK: - Tests

@Test(.enabled(if: runsFixtureTests, missingFixturesMessage))
func trlFixturesHaveCases() throws {
  try #require(fixturesExist, fixturesRequiredMessage)
  #expect(
    !float64Cases.isEmpty,
    "\(fixtureDirectory.path): expected float64 cases, observed none"
  )
  #expect(
    !trainingSteps.isEmpty,
    "\(fixtureDirectory.path): expected training steps, observed none"
  )
}

@Test(
  .enabled(if: runsFixtureTests, missingFixturesMessage),
  arguments: float64Cases
)
func trlCaseLossMatches(folder: String) throws {
  try expectBatchLossMatches(folder)
}

@Test(
  .enabled(if: runsFixtureTests, missingFixturesMessage),
  arguments: float64Cases
)
func trlCasePairLossesMatch(folder: String) throws {
  try expectPairLossesMatch(folder)
}

@Test(
  .enabled(if: runsFixtureTests, missingFixturesMessage),
  arguments: trainingSteps
)
func trainingStepLossMatches(folder: String) throws {
  try expectBatchLossMatches(folder)
}

@Test(
  .enabled(if: runsFixtureTests, missingFixturesMessage),
  arguments: trainingSteps
)
func trainingStepPairLossesMatch(folder: String) throws {
  try expectPairLossesMatch(folder)
}
