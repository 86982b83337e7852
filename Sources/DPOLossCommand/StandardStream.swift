// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Glibc

/// A text stream that writes to the process's standard output or standard
/// error with `write(2)`, unbuffered.
public struct StandardStream: TextOutputStream, Sendable {
  private let fileDescriptor: Int32

  /// Standard output, file descriptor 1.
  public static let output = StandardStream(fileDescriptor: STDOUT_FILENO)

  /// Standard error, file descriptor 2.
  public static let error = StandardStream(fileDescriptor: STDERR_FILENO)

  /// Writes the UTF-8 bytes of `string`. A write error, such as a closed
  /// pipe, drops the rest of the text, because the stream has no way to
  /// report it.
  public mutating func write(_ string: String) {
    var string = string
    string.withUTF8 { bytes in
      var offset = 0
      while offset < bytes.count {
        let result = Glibc.write(
          fileDescriptor,
          bytes.baseAddress! + offset,
          bytes.count - offset
        )
        if result < 0 && errno == EINTR {
          continue
        }
        if result <= 0 {
          return
        }
        offset += result
      }
    }
  }
}
