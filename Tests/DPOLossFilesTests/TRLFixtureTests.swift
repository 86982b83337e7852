// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossFiles
import Foundation
import Testing

/// Returns the folder of log-probs that Hugging Face TRL 1.16.0 produced:
/// `$DPOLOSS_TRL_FIXTURES` if it is set, otherwise `shared/fixtures/trl`
/// beside the repository root, which lies outside the repository.
func trlFixtureFolder(
  environment: [String: String],
  repositoryRoot: URL
) -> String {
  if let override = environment["DPOLOSS_TRL_FIXTURES"] {
    return override
  }
  return repositoryRoot.deletingLastPathComponent()
    .appendingPathComponent("shared/fixtures/trl").path
}

/// Returns whether missing TRL fixtures fail the TRL tests instead of
/// skipping them: when the environment variable CI is "true". CI checks
/// the fixtures out beside the repository, so a skip there would hide a
/// broken path.
func requiresTRLFixtures(environment: [String: String]) -> Bool {
  environment["CI"] == "true"
}

/// The repository root, found from this source file with symlinks resolved.
private let repositoryRoot = URL(fileURLWithPath: #filePath)
  .resolvingSymlinksInPath()
  .deletingLastPathComponent()  // DPOLossFilesTests
  .deletingLastPathComponent()  // Tests
  .deletingLastPathComponent()

private let trlFixtures = trlFixtureFolder(
  environment: ProcessInfo.processInfo.environment,
  repositoryRoot: repositoryRoot
)

private let trlFixturesFound = FileManager.default.fileExists(
  atPath: trlFixtures
)

/// The TRL tests run if the fixtures exist, and in CI, where they fail if
/// the fixtures are missing.
private let runsTRLTests =
  trlFixturesFound
  || requiresTRLFixtures(environment: ProcessInfo.processInfo.environment)

/// The failure message when the fixtures are missing in CI.
private let fixturesRequiredMessage = Comment(
  rawValue: """
    TRL reference arrays not found at \(trlFixtures), and CI is "true", so \
    the TRL tests fail instead of being skipped. Check out the fixtures \
    there, or set DPOLOSS_TRL_FIXTURES to their folder.
    """
)

private let logProbNames = [
  "chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps",
]

@Suite(
  "TRL reference arrays",
  .enabled(
    if: runsTRLTests,
    Comment(
      rawValue: """
        TRL reference arrays not found at \(trlFixtures). Set \
        DPOLOSS_TRL_FIXTURES to their folder to run these tests.
        """
    )
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
    let folder = trlFixtureFolder(
      environment: ["DPOLOSS_TRL_FIXTURES": "/data/trl"],
      repositoryRoot: root
    )

    #expect(folder == "/data/trl")
  }

  @Test("default folder is beside repository")
  func defaultFolderIsBesideRepository() {
    let folder = trlFixtureFolder(
      environment: ["CI": "true"],
      repositoryRoot: root
    )

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
    #expect(requiresTRLFixtures(environment: environment) == expected)
  }
}
