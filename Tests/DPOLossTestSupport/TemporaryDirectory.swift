// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Foundation

/// A fresh directory under the system temporary directory, removed with
/// its contents when the value is released.
public final class TemporaryDirectory {
  /// The directory's absolute path.
  public let path: String

  /// Creates the directory `<prefix>-<UUID>` in the temporary directory.
  public init(prefix: String = "DPOLossTests") throws {
    let base = FileManager.default.temporaryDirectory.path
    path = "\(base)/\(prefix)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(
      atPath: path,
      withIntermediateDirectories: false
    )
  }

  deinit {
    try? FileManager.default.removeItem(atPath: path)
  }

  /// Returns the path of `name` inside the directory.
  public func file(_ name: String) -> String {
    "\(path)/\(name)"
  }

  /// Writes `bytes` to `name` and returns the file's path.
  @discardableResult
  public func write(_ bytes: [UInt8], to name: String) throws -> String {
    let path = file(name)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
  }

  /// Writes the UTF-8 bytes of `text` to `name` and returns the file's path.
  @discardableResult
  public func write(_ text: String, to name: String) throws -> String {
    try write(Array(text.utf8), to: name)
  }

  /// Returns the names of the entries in the directory, sorted.
  public func entries() throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: path).sorted()
  }

  /// Returns whether anything exists at `name`.
  public func contains(_ name: String) -> Bool {
    FileManager.default.fileExists(atPath: file(name))
  }
}
