// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Glibc

/// A group of files written under temporary names and renamed into place
/// together, so that a failure while writing any of them leaves every
/// destination unchanged.
///
/// Each `writeNumPyArray(_:to:)` writes a complete file, flushed with
/// `fsync(2)`, to a hidden temporary file in the destination's directory.
/// `commit()` then checks that no destination is a directory and renames
/// the temporary files into place in the order they were written.
/// Temporary files that are not renamed are removed by `discard()`, by a
/// failed `commit()` and when the group is released.
///
/// NOTE: `rename(2)` replaces one file at a time. If a rename fails after
/// the first, the files renamed before it have the new contents and the
/// others keep the old ones, and `commit()` throws
/// `FileWriteError.incompleteCommit`, which lists the renamed files.
public final class StagedFiles {
  private var writers: [AtomicFileWriter] = []

  /// Creates an empty group.
  public init() {}

  /// Writes `values` as a 1-D float64 `.npy` file, as
  /// `NumPyArray.write(_:to:)` does, to a temporary file that `commit()`
  /// renames to `path`.
  ///
  /// - Parameters:
  ///   - values: The values to write. NaN and infinities are stored as is.
  ///   - path: The destination path.
  /// - Throws: `FileWriteError.createFailed` if the temporary file cannot
  ///   be created, and `.writeFailed` if writing or `fsync(2)` fails. The
  ///   files written before stay staged.
  /// - Precondition: No file in the group has the destination `path`.
  /// - Complexity: O(n) time, where n is `values.count`, and a 1 MiB write
  ///   buffer.
  public func writeNumPyArray(
    _ values: [Double],
    to path: String
  ) throws(FileWriteError) {
    precondition(
      !writers.contains { $0.path == path },
      "\(path) is staged twice"
    )
    let writer = try AtomicFileWriter(path: path)
    try NumPyArray.appendFile(values.span, to: writer)
    try writer.finish()
    writers.append(writer)
  }

  /// Renames every staged file into place, in the order they were written,
  /// and empties the group.
  ///
  /// - Throws: A `FileWriteError`, after which the group is empty and its
  ///   remaining temporary files are removed:
  ///   - `.renameFailed` if a destination is a directory, found before any
  ///     file is renamed, or if the first rename fails. Every destination
  ///     is then unchanged.
  ///   - `.incompleteCommit` if a later rename fails.
  /// - Complexity: O(f) system calls, where f is the number of files.
  public func commit() throws(FileWriteError) {
    defer { discard() }
    for writer in writers where isDirectory(writer.path) {
      throw .renameFailed(path: writer.path, reason: "it is a directory")
    }

    var renamedPaths: [String] = []
    for writer in writers {
      do throws(FileWriteError) {
        try writer.moveIntoPlace()
      } catch {
        guard !renamedPaths.isEmpty, case .renameFailed(_, let reason) = error
        else {
          throw error
        }
        throw .incompleteCommit(
          path: writer.path,
          reason: reason,
          renamedPaths: renamedPaths
        )
      }
      renamedPaths.append(writer.path)
    }
  }

  /// Removes the temporary files that are not yet renamed, and empties the
  /// group.
  public func discard() {
    for writer in writers {
      writer.discardTemporaryFile()
    }
    writers.removeAll()
  }

  deinit {
    discard()
  }
}

/// Returns whether `path` is a directory itself, not a symbolic link to
/// one, which `rename(2)` would replace.
private func isDirectory(_ path: String) -> Bool {
  var status = stat()
  guard lstat(path, &status) == 0 else {
    return false
  }
  return status.st_mode & S_IFMT == S_IFDIR
}
