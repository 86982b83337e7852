// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLoss
import DPOLossFiles
import Glibc

/// The destination of the `--per-example` results: a directory of `.npy`
/// files or one table file.
enum PerExampleDestination: Equatable {
  /// A directory with one float64 `.npy` file per result.
  case directory(String)
  /// One CSV file, or TSV if the name ends in `.tsv`, with one column per
  /// result.
  case table(String)

  /// The names of the results: the `.npy` file stems and the table's
  /// column names, in column order.
  static let resultNames = [
    "losses", "chosen_rewards", "rejected_rewards", "grad_policy_chosen",
    "grad_policy_rejected",
  ]

  /// Chooses a table for a path that ends in `.csv` or `.tsv`, in any
  /// capitalization, and a directory otherwise.
  init(path: String) {
    let lowercased = path.lowercased()
    if lowercased.hasSuffix(".csv") || lowercased.hasSuffix(".tsv") {
      self = .table(path)
    } else {
      self = .directory(path)
    }
  }

  /// Rejects a destination that cannot be written, before any input is
  /// read: a directory path that is an existing file, or a table path that
  /// is an existing directory. Creates nothing.
  func checkWritable() throws(CommandError) {
    switch self {
    case .directory(let path):
      if let isDirectory = fileIsDirectory(path), !isDirectory {
        throw .data(
          "\(path): --per-example names an existing file, but a path "
            + "without a .csv or .tsv suffix is a directory for .npy files. "
            + "Pass a directory, or a path ending in .csv or .tsv."
        )
      }
    case .table(let path):
      if fileIsDirectory(path) == true {
        throw .data(
          "\(path): --per-example names an existing directory, but a path "
            + "ending in .csv or .tsv is written as one table file. Pass "
            + "another path."
        )
      }
    }
  }

  /// Writes the per-pair results, replacing files of the same names.
  ///
  /// A table is written to a temporary file and renamed into place. In a
  /// directory, all five `.npy` files are first written to temporary files,
  /// and only when every write has succeeded are they renamed into place.
  /// If a write fails, or a destination is a directory, only the temporary
  /// files are removed, with the directories this call created, so files
  /// from an earlier run stay unchanged.
  ///
  /// NOTE: `rename(2)` replaces one file at a time. If a rename after the
  /// first fails, the files renamed before it hold this run's results and
  /// the others the earlier run's, and the error lists the renamed files.
  ///
  /// - Precondition: `outputs` contains losses, policy gradients and
  ///   rewards.
  func write(_ outputs: DPOOutputs) throws(CommandError) {
    let results = [
      outputs.losses, outputs.chosenRewards, outputs.rejectedRewards,
      outputs.policyChosenGradient, outputs.policyRejectedGradient,
    ].map { values in
      guard let values else {
        preconditionFailure("per-example outputs were not requested")
      }
      return values
    }

    switch self {
    case .table(let path):
      let columns = zip(Self.resultNames, results).map { name, values in
        (name: name, values: values)
      }
      do throws(FileWriteError) {
        try CSVFile.write(columns: columns, to: path)
      } catch {
        throw .data(error.description)
      }
    case .directory(let path):
      try writeNumPyFiles(results, into: path)
    }
  }

  private func writeNumPyFiles(
    _ results: [[Double]],
    into directory: String
  ) throws(CommandError) {
    let createdDirectories = try createDirectory(directory)
    let files = StagedFiles()
    do throws(FileWriteError) {
      for (name, values) in zip(Self.resultNames, results) {
        let path =
          directory.hasSuffix("/")
          ? "\(directory)\(name).npy" : "\(directory)/\(name).npy"
        try files.writeNumPyArray(values, to: path)
      }
      try files.commit()
    } catch {
      files.discard()
      // rmdir(2) removes only empty directories, so a directory that
      // contains files renamed before a failed rename stays.
      for created in createdDirectories.reversed() {
        rmdir(created)
      }
      throw .data(error.description)
    }
  }
}

/// Returns whether `path` is a directory, or `nil` if nothing exists there.
/// A symbolic link is followed.
private func fileIsDirectory(_ path: String) -> Bool? {
  var status = stat()
  guard stat(path, &status) == 0 else {
    return nil
  }
  return status.st_mode & S_IFMT == S_IFDIR
}

/// Creates `path` and its missing parents, as `mkdir -p` does, and returns
/// the directories created, outermost first.
private func createDirectory(_ path: String) throws(CommandError)
  -> [String]
{
  var missing: [String] = []
  var current = path
  while !current.isEmpty, fileIsDirectory(current) == nil {
    missing.append(current)
    guard let slash = current.lastIndex(of: "/") else {
      break
    }
    current = String(current[..<slash])
  }

  var created: [String] = []
  for directory in missing.reversed() {
    // Mode 0777 lets the umask decide the permissions, as mkdir(1) does.
    if mkdir(directory, 0o777) == 0 {
      created.append(directory)
      continue
    }
    let code = errno
    if code == EEXIST {
      continue
    }
    for directory in created.reversed() {
      rmdir(directory)
    }
    throw .data(
      "\(directory): cannot create the --per-example directory "
        + "(\(errorText(code))). Check the path and its permissions."
    )
  }
  return created
}
