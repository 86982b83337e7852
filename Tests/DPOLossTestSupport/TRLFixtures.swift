// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Foundation

/// The location of the log-probs and results that Hugging Face TRL 1.16.0
/// produced, which the tests of every target compare with. The data is not
/// part of the repository.
public enum TRLFixtures {
  /// Returns the fixture folder: `$DPOLOSS_TRL_FIXTURES` if it is set,
  /// otherwise `shared/fixtures/trl` beside the repository root.
  public static func folder(
    environment: [String: String],
    repositoryRoot: URL
  ) -> URL {
    if let override = environment["DPOLOSS_TRL_FIXTURES"] {
      return URL(fileURLWithPath: override, isDirectory: true)
    }
    return repositoryRoot.deletingLastPathComponent()
      .appendingPathComponent("shared/fixtures/trl", isDirectory: true)
  }

  /// Returns whether missing fixtures fail the TRL tests instead of
  /// skipping them: when the environment variable CI is "true". CI checks
  /// the fixtures out beside the repository, so a skip there would hide a
  /// broken path.
  public static func areRequired(environment: [String: String]) -> Bool {
    environment["CI"] == "true"
  }

  /// The repository root, three levels above this file with symlinks
  /// resolved.
  public static let repositoryRoot = URL(fileURLWithPath: #filePath)
    .resolvingSymlinksInPath()
    .deletingLastPathComponent()  // TRLFixtures
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()

  /// The fixture folder for this process's environment.
  public static let directory = folder(
    environment: ProcessInfo.processInfo.environment,
    repositoryRoot: repositoryRoot
  )

  /// Whether the fixture folder exists.
  public static let exist = FileManager.default.fileExists(
    atPath: directory.path
  )

  /// Whether missing fixtures fail the TRL tests (in CI).
  public static let required = areRequired(
    environment: ProcessInfo.processInfo.environment
  )

  /// Whether the TRL tests run: when the fixtures exist, and in CI, where
  /// they then fail if the fixtures are missing.
  public static let runTests = exist || required

  /// The reason a TRL test is skipped.
  public static let missingMessage = """
    TRL fixtures not found at \(directory.path). Set DPOLOSS_TRL_FIXTURES \
    to the folder that contains the TRL README.md to run these tests.
    """

  /// The failure message of a TRL test in CI when the fixtures are missing.
  public static let requiredMessage = """
    TRL fixtures not found at \(directory.path), and CI is "true", so the \
    TRL tests fail instead of being skipped. Check out the fixtures there, \
    or set DPOLOSS_TRL_FIXTURES to their folder.
    """
}
