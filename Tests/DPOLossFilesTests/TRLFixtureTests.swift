// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossFiles
import Foundation
import Testing

/// The folder of log-probs that Hugging Face TRL 1.16.0 produced. It lives
/// outside the repository, at `shared/fixtures/trl` beside the repository
/// root, so the path is found from this source file with symlinks resolved.
private let trlFixtures: String = {
  let repositoryRoot = URL(fileURLWithPath: #filePath)
    .resolvingSymlinksInPath()
    .deletingLastPathComponent()  // DPOLossFilesTests
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()
  return repositoryRoot.deletingLastPathComponent()
    .appendingPathComponent("shared/fixtures/trl").path
}()

private let trlFixturesFound = FileManager.default.fileExists(
  atPath: trlFixtures
)

private let logProbNames = [
  "chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps",
]

@Suite(
  "TRL reference arrays",
  .enabled(
    if: trlFixturesFound,
    Comment(rawValue: "TRL reference arrays not found at \(trlFixtures)")
  )
)
struct TRLFixtureTests {
  @Test("big float64 inputs load", arguments: logProbNames)
  func bigFloat64InputsLoad(name: String) throws {
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
