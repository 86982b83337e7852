// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// An error that `NumPyArray.write(_:to:)`, `CSVFile.write(columns:to:)`
/// or `StagedFiles` throws. Nothing is created at the destination path when
/// one is thrown, except after `.incompleteCommit`.
public enum FileWriteError: Error, Equatable, Sendable,
  CustomStringConvertible
{
  /// The temporary file next to the destination could not be created, for
  /// example because the directory is missing or not writable.
  case createFailed(path: String, reason: String)

  /// Writing or flushing the temporary file failed, for example because the
  /// disk is full.
  case writeFailed(path: String, reason: String)

  /// Renaming the finished temporary file to the destination failed, for
  /// example because the destination is a directory.
  case renameFailed(path: String, reason: String)

  /// A `StagedFiles` commit renamed `renamedPaths` into place, and then
  /// renaming the file for `path` failed. Those files have the new
  /// contents, and `path` and the files after it keep the old ones.
  case incompleteCommit(path: String, reason: String, renamedPaths: [String])

  /// The table to write has no columns.
  case noColumns(path: String)

  /// A column name cannot be written so that it reads back unchanged.
  case invalidColumnName(path: String, name: String, reason: String)

  /// Two columns have the same name.
  case duplicateColumnName(path: String, name: String)

  /// A column's length differs from the first column's length.
  case columnLengthMismatch(
    path: String,
    name: String,
    count: Int,
    expectedCount: Int
  )

  /// The destination path that the failed write was for.
  public var path: String {
    switch self {
    case .createFailed(let path, _), .writeFailed(let path, _),
      .renameFailed(let path, _), .incompleteCommit(let path, _, _),
      .noColumns(let path),
      .invalidColumnName(let path, _, _), .duplicateColumnName(let path, _),
      .columnLengthMismatch(let path, _, _, _):
      return path
    }
  }

  /// A message that names the file, the problem and the fix.
  public var description: String {
    switch self {
    case .createFailed(let path, let reason):
      return "\(path): cannot create the output file (\(reason)). Check "
        + "that the directory exists and is writable."
    case .writeFailed(let path, let reason):
      return "\(path): writing the output failed (\(reason)). Check the "
        + "free space on the disk and try again."
    case .renameFailed(let path, let reason):
      return "\(path): cannot replace the destination with the finished "
        + "file (\(reason)). Check that the path is not a directory."
    case .incompleteCommit(let path, let reason, let renamedPaths):
      let renamed = renamedPaths.joined(separator: ", ")
      return "\(path): cannot replace the destination with the finished "
        + "file (\(reason)), after \(renamed) had been replaced. Those "
        + "files have the new contents and the others the old ones, so "
        + "fix the problem and write all of them again."
    case .noColumns(let path):
      return "\(path): the table to write has no columns. Pass at least "
        + "one named column."
    case .invalidColumnName(let path, let name, let reason):
      return "\(path): invalid column name '\(name)' because it \(reason). "
        + "Rename the column."
    case .duplicateColumnName(let path, let name):
      return "\(path): the column name '\(name)' appears more than once. "
        + "Give each column a distinct name."
    case .columnLengthMismatch(let path, let name, let count, let expected):
      return "\(path): column '\(name)' has \(count) values but the first "
        + "column has \(expected). Pass columns of equal length."
    }
  }
}
