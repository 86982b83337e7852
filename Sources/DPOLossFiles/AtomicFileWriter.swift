// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Glibc

/// A buffered writer that fills a temporary file next to the destination
/// and renames it into place on `commit()`.
///
/// Until `commit()` or `moveIntoPlace()` succeeds, nothing appears at the
/// destination path. If the writer is destroyed before that, or a write
/// fails, the temporary file is removed. `rename(2)` replaces an existing
/// file in one step, so readers see either the old file or the complete new
/// one.
///
/// NOTE: A process killed during the write leaves the hidden temporary
/// file, named `.<name>.<random hex>.tmp`, in the directory.
final class AtomicFileWriter {
  /// The stages of the temporary file.
  private enum State {
    /// The file is open for writing.
    case open
    /// The file is complete, flushed and closed, but not yet renamed.
    case closed
    /// The file was renamed to the destination or removed.
    case done
  }

  /// The destination path.
  let path: String

  private let temporaryPath: String
  private let descriptor: Int32
  private var buffer: [UInt8] = []
  private var state = State.open

  /// Pending bytes are written once the buffer reaches this size.
  private static let bufferCapacity = 1 << 20

  /// Creates the temporary file in the directory of `path`.
  init(path: String) throws(FileWriteError) {
    let (directory, name) = splitPath(path)
    guard let name else {
      throw .createFailed(path: path, reason: "the path names a directory")
    }
    let prefix = directory.hasSuffix("/") ? directory : directory + "/"

    // O_EXCL makes a name collision fail instead of sharing a file with
    // another writer. A collision of 64 random bits is unlikely, so a few
    // retries suffice.
    var attempts = 0
    while true {
      let suffix = String(UInt64.random(in: .min ... .max), radix: 16)
      let candidate = "\(prefix).\(name).\(suffix).tmp"
      let flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC
      // Mode 0666 lets the process umask decide the final permissions, as it
      // does for files that NumPy or a shell redirection creates.
      let descriptor = open(candidate, flags, 0o666)
      if descriptor >= 0 {
        self.path = path
        self.temporaryPath = candidate
        self.descriptor = descriptor
        break
      }
      let code = errno
      attempts += 1
      if (code == EEXIST || code == EINTR) && attempts < 8 {
        continue
      }
      throw .createFailed(path: path, reason: errnoDescription(code))
    }
    buffer.reserveCapacity(Self.bufferCapacity)
  }

  deinit {
    discardTemporaryFile()
  }

  /// Appends one byte.
  func append(_ byte: UInt8) throws(FileWriteError) {
    buffer.append(byte)
    if buffer.count >= Self.bufferCapacity {
      try flush()
    }
  }

  /// Appends the bytes of `bytes`.
  func append(_ bytes: UnsafeRawBufferPointer) throws(FileWriteError) {
    if buffer.count + bytes.count > Self.bufferCapacity {
      try flush()
    }
    if bytes.count >= Self.bufferCapacity {
      try writeFully(bytes)
    } else {
      buffer.append(contentsOf: bytes)
    }
  }

  /// Appends the elements of `bytes`.
  func append(_ bytes: [UInt8]) throws(FileWriteError) {
    let result: Result<Void, FileWriteError> = bytes.withUnsafeBytes {
      buffer in
      Result { () throws(FileWriteError) in try append(buffer) }
    }
    try result.get()
  }

  /// Appends the UTF-8 bytes of `text`.
  func append(_ text: String) throws(FileWriteError) {
    var text = text
    let result: Result<Void, FileWriteError> = text.withUTF8 { bytes in
      Result { () throws(FileWriteError) in
        try append(UnsafeRawBufferPointer(bytes))
      }
    }
    try result.get()
  }

  /// Writes the pending bytes, flushes them to storage with `fsync(2)`, and
  /// renames the temporary file to the destination path.
  func commit() throws(FileWriteError) {
    try finish()
    try moveIntoPlace()
  }

  /// Writes the pending bytes, flushes them to storage with `fsync(2)` and
  /// closes the temporary file, which stays until `moveIntoPlace()` or the
  /// end of the writer.
  func finish() throws(FileWriteError) {
    try flush()
    if fsync(descriptor) != 0 {
      let reason = errnoDescription(errno)
      discardTemporaryFile()
      throw .writeFailed(path: path, reason: "fsync failed: \(reason)")
    }
    state = .closed
    if close(descriptor) != 0 {
      let reason = errnoDescription(errno)
      discardTemporaryFile()
      throw .writeFailed(path: path, reason: "close failed: \(reason)")
    }
  }

  /// Renames the finished temporary file to the destination path, and
  /// removes it if the rename fails.
  ///
  /// - Precondition: `finish()` succeeded and this is the first call.
  func moveIntoPlace() throws(FileWriteError) {
    precondition(state == .closed, "moveIntoPlace before finish or twice")
    if rename(temporaryPath, path) != 0 {
      let reason = errnoDescription(errno)
      discardTemporaryFile()
      throw .renameFailed(path: path, reason: reason)
    }
    state = .done
  }

  private func flush() throws(FileWriteError) {
    if buffer.isEmpty {
      return
    }
    let result: Result<Void, FileWriteError> = buffer.withUnsafeBytes {
      bytes in
      Result { () throws(FileWriteError) in try writeFully(bytes) }
    }
    try result.get()
    buffer.removeAll(keepingCapacity: true)
  }

  private func writeFully(_ bytes: UnsafeRawBufferPointer)
    throws(FileWriteError)
  {
    precondition(state == .open, "write after finish or a failed write")
    var offset = 0
    while offset < bytes.count {
      let result = Glibc.write(
        descriptor,
        bytes.baseAddress! + offset,
        bytes.count - offset
      )
      if result < 0 {
        let code = errno
        if code == EINTR {
          continue
        }
        discardTemporaryFile()
        throw .writeFailed(path: path, reason: errnoDescription(code))
      }
      offset += result
    }
  }

  /// Closes the temporary file if it is open and removes it, unless it was
  /// renamed or removed already.
  func discardTemporaryFile() {
    switch state {
    case .open:
      close(descriptor)
      unlink(temporaryPath)
    case .closed:
      unlink(temporaryPath)
    case .done:
      break
    }
    state = .done
  }
}
