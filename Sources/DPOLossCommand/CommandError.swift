// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// An error that stops `dpo-loss`, with the message for standard error.
struct CommandError: Error, Equatable {
  /// The class of failure, which selects the exit status.
  enum Kind: Equatable {
    /// The arguments are invalid: exit status 2.
    case usage
    /// An input file, its data or an output path is invalid: exit status 1.
    case data
  }

  var kind: Kind

  /// A message that names the option or file, the problem and the fix.
  var message: String

  static func usage(_ message: String) -> CommandError {
    CommandError(kind: .usage, message: message)
  }

  static func data(_ message: String) -> CommandError {
    CommandError(kind: .data, message: message)
  }

  /// The process exit status for this error.
  var exitStatus: Int32 {
    switch kind {
    case .usage: ExitStatus.usageError
    case .data: ExitStatus.dataError
    }
  }
}

/// The exit statuses of `dpo-loss`, as `--help` documents them.
public enum ExitStatus {
  /// The loss was computed and every requested output was written.
  public static let success: Int32 = 0
  /// An input file or its data is invalid, or an output cannot be written.
  public static let dataError: Int32 = 1
  /// The arguments are invalid: an unknown option, a missing or invalid
  /// value, or a missing or conflicting input.
  public static let usageError: Int32 = 2
}
