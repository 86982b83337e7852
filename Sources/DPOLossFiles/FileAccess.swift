// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Glibc

/// The reason a file could not be opened or read.
enum ReadFailure: Error {
  case notFound
  case unreadable(reason: String)
}

/// Returns the C library's message for an `errno` value.
func errnoDescription(_ code: Int32) -> String {
  String(cString: strerror(code))
}

/// A regular file open for reading, closed when the value is destroyed.
struct ReadOnlyFile: ~Copyable {
  let descriptor: Int32

  /// The file size in bytes when the file was opened.
  let size: Int

  /// Opens `path` for reading and rejects anything but a regular file.
  init(path: String) throws(ReadFailure) {
    // O_NONBLOCK keeps open() from waiting for a writer when the path is a
    // FIFO. It has no effect on reads from a regular file.
    let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    if descriptor < 0 {
      let code = errno
      if code == ENOENT {
        throw .notFound
      }
      throw .unreadable(reason: errnoDescription(code))
    }

    var status = stat()
    if fstat(descriptor, &status) != 0 {
      let code = errno
      close(descriptor)
      throw .unreadable(reason: errnoDescription(code))
    }
    let fileType = status.st_mode & S_IFMT
    if fileType == S_IFDIR {
      close(descriptor)
      throw .unreadable(reason: "it is a directory")
    }
    if fileType != S_IFREG {
      close(descriptor)
      throw .unreadable(reason: "it is not a regular file")
    }

    self.descriptor = descriptor
    self.size = Int(status.st_size)
  }

  deinit {
    close(descriptor)
  }

  /// Reads bytes starting at `offset` until `buffer` is full or the file
  /// ends, and returns the number of bytes read.
  func read(
    into buffer: UnsafeMutableRawBufferPointer,
    at offset: Int
  ) throws(ReadFailure) -> Int {
    var total = 0
    while total < buffer.count {
      let result = pread(
        descriptor,
        buffer.baseAddress! + total,
        buffer.count - total,
        off_t(offset + total)
      )
      if result < 0 {
        let code = errno
        if code == EINTR {
          continue
        }
        throw .unreadable(reason: errnoDescription(code))
      }
      if result == 0 {
        break
      }
      total += result
    }
    return total
  }

  /// Maps the whole file read-only into memory.
  ///
  /// The caller owns the mapping and must release it with `munmap(_:_:)`,
  /// passing `size` as the length.
  /// - Precondition: `size` is greater than zero.
  func mapReadOnly() throws(ReadFailure) -> UnsafeMutableRawPointer {
    precondition(size > 0, "mmap cannot map an empty file")
    let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0)
    // Glibc's MAP_FAILED is ((void *) -1), which Swift does not import.
    guard let address, address != UnsafeMutableRawPointer(bitPattern: -1)
    else {
      throw .unreadable(reason: "mmap failed: \(errnoDescription(errno))")
    }
    return address
  }
}

/// Returns the directory part of `path` and the final component, or `nil`
/// for the name when `path` ends with a slash.
func splitPath(_ path: String) -> (directory: String, name: String?) {
  guard let slash = path.lastIndex(of: "/") else {
    return (".", path.isEmpty ? nil : path)
  }
  let directory = slash == path.startIndex ? "/" : String(path[..<slash])
  let name = String(path[path.index(after: slash)...])
  return (directory, name.isEmpty ? nil : name)
}
