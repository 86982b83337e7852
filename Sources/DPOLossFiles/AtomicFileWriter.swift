// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Glibc

/// A buffered writer that fills a temporary file next to the destination
/// and renames it into place on `commit()`.
///
/// Until `commit()` succeeds, nothing appears at the destination path. If the
/// writer is destroyed without a successful commit, or a write fails, the
/// temporary file is removed. `rename(2)` replaces an existing file in one
/// step, so readers see either the old file or the complete new one.
///
/// NOTE: A process killed during the write leaves the hidden temporary
/// file, named `.<name>.<random hex>.tmp`, in the directory.
final class AtomicFileWriter {
  /// The destination path.
  let path: String

  private let temporaryPath: String
  private let descriptor: Int32
  private var buffer: [UInt8] = []
  private var isFinished = false

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
    if !isFinished {
      close(descriptor)
      unlink(temporaryPath)
    }
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
    try flush()
    if fsync(descriptor) != 0 {
      let reason = errnoDescription(errno)
      discardTemporaryFile()
      throw .writeFailed(path: path, reason: "fsync failed: \(reason)")
    }
    if close(descriptor) != 0 {
      let reason = errnoDescription(errno)
      isFinished = true
      unlink(temporaryPath)
      throw .writeFailed(path: path, reason: "close failed: \(reason)")
    }
    isFinished = true
    if rename(temporaryPath, path) != 0 {
      let reason = errnoDescription(errno)
      unlink(temporaryPath)
      throw .renameFailed(path: path, reason: reason)
    }
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
    precondition(!isFinished, "write after commit or after a failed write")
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

  private func discardTemporaryFile() {
    if !isFinished {
      isFinished = true
      close(descriptor)
      unlink(temporaryPath)
    }
  }
}
