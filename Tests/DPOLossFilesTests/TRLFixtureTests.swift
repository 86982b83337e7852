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

private let logProbNames = [
  "chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps",
]

@Suite(
  "TRL reference arrays",
  .enabled(
    if: runsTRLTests,
    Comment(rawValue: TRLFixtures.missingMessage)
  )
)
struct TRLFixtureTests {
  @Test("reference arrays are present")
  func referenceArraysArePresent() {
    #expect(trlFixturesFound, fixturesRequiredMessage)
  }

  @Test("big float64 inputs load", arguments: logProbNames)
  func bigFloat64InputsLoad(name: String) throws {
    try #require(trlFixturesFound, fixturesRequiredMessage)
    let path = "\(trlFixtures)/big/inputs/\(name).f64.npy"

    let array = try NumPyArray(contentsOf: path)
    let loaded = values(of: array)

    #expect(array.count == 4096)
    #expect(array.dtype == .float64)
    #expect(array.isMemoryMapped)
    #expect(loaded.allSatisfy { $0.isFinite })
    // Log-probs of multi-token completions are strictly negative.
    #expect(try #require(loaded.max()) < 0)
  }

  @Test("float32 inputs match float64 copies", arguments: logProbNames)
  func float32InputsMatchFloat64Copies(name: String) throws {
    try #require(trlFixturesFound, fixturesRequiredMessage)
    // The .f64.npy inputs of a training step are exact float64 copies of
    // the float32 values used in training.
    let step = "\(trlFixtures)/train_run/step_01"

    let single = try NumPyArray(contentsOf: "\(step)/\(name).float32.npy")
    let double = try NumPyArray(contentsOf: "\(step)/\(name).f64.npy")
    let loaded = values(of: single)

    #expect(single.count == 8)
    #expect(single.dtype == .float32)
    #expect(loaded.allSatisfy { $0.isFinite })
    #expect(try #require(loaded.max()) < 0)
    #expect(firstMismatch(loaded, values(of: double)) == nil)
  }
}

@Suite("TRL fixture location")
struct TRLFixtureLocationTests {
  private let root = URL(fileURLWithPath: "/home/user/work/DPOLoss")

  @Test("environment variable sets folder")
  func environmentVariableSetsFolder() {
    let folder = TRLFixtures.folder(
      environment: ["DPOLOSS_TRL_FIXTURES": "/data/trl"],
      repositoryRoot: root
    ).path

    #expect(folder == "/data/trl")
  }

  @Test("default folder is beside repository")
  func defaultFolderIsBesideRepository() {
    let folder = TRLFixtures.folder(
      environment: ["CI": "true"],
      repositoryRoot: root
    ).path

    #expect(folder == "/home/user/work/shared/fixtures/trl")
  }

  @Test(
    "only CI requires fixtures",
    arguments: [
      (["CI": "true"], true), (["CI": "false"], false), (["CI": "1"], false),
      ([:], false),
    ]
  )
  func onlyCIRequiresFixtures(
    environment: [String: String],
    expected: Bool
  ) {
    #expect(TRLFixtures.areRequired(environment: environment) == expected)
  }
}
