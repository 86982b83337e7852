// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

extension NumPyArray {
  /// Writes `values` as a 1-D little-endian float64 `.npy` file, format
  /// version 1.0, that `numpy.load` reads back unchanged.
  ///
  /// The header matches what `numpy.save` in NumPy 2.4 writes for a 1-D
  /// float64 array, including its padding, so the data starts at a multiple
  /// of 64 bytes and `NumPyArray(contentsOf:)` can map it in place. The file
  /// is written to a temporary file in the same directory and renamed to
  /// `path`, which replaces an existing file. On failure nothing is left at
  /// `path` and an existing file there is unchanged.
  ///
  /// - Parameters:
  ///   - values: The values to write. NaN and infinities are stored as is.
  ///   - path: The destination path.
  /// - Throws: `FileWriteError.createFailed` if the temporary file cannot be
  ///   created, `.writeFailed` if writing or `fsync(2)` fails, and
  ///   `.renameFailed` if the finished file cannot be moved to `path`.
  /// - Complexity: O(n) time, where n is `values.count`, and a 1 MiB write
  ///   buffer.
  public static func write(
    _ values: Span<Double>,
    to path: String
  ) throws(FileWriteError) {
    let writer = try AtomicFileWriter(path: path)
    try appendFile(values, to: writer)
    try writer.commit()
  }

  /// Appends the header and the little-endian data of a 1-D float64 `.npy`
  /// file that contains `values`.
  static func appendFile(
    _ values: Span<Double>,
    to writer: AtomicFileWriter
  ) throws(FileWriteError) {
    try writer.append(npyHeader(count: values.count))

    // Convert in chunks so that the file is little-endian on any host.
    let chunkCapacity = 8192
    let chunk = UnsafeMutableBufferPointer<UInt64>.allocate(
      capacity: chunkCapacity
    )
    defer { chunk.deallocate() }
    var start = 0
    while start < values.count {
      let end = min(start + chunkCapacity, values.count)
      for index in start..<end {
        chunk[index - start] = values[index].bitPattern.littleEndian
      }
      let bytes = UnsafeRawBufferPointer(
        start: chunk.baseAddress,
        count: (end - start) * MemoryLayout<UInt64>.size
      )
      try writer.append(bytes)
      start = end
    }
  }

  /// Writes `values` as a 1-D float64 `.npy` file, as
  /// `write(_:to:)` with a span does.
  ///
  /// - Parameters:
  ///   - values: The values to write.
  ///   - path: The destination path.
  /// - Throws: The same `FileWriteError` cases as `write(_:to:)` with a span.
  /// - Complexity: O(n) time, where n is `values.count`, and a 1 MiB write
  ///   buffer.
  public static func write(
    _ values: [Double],
    to path: String
  ) throws(FileWriteError) {
    try write(values.span, to: path)
  }

  /// Returns the magic string, version 1.0, header length and padded header
  /// for a 1-D float64 array of `count` elements.
  static func npyHeader(count: Int) -> [UInt8] {
    var header =
      "{'descr': '<f8', 'fortran_order': False, 'shape': (\(count),), }"
    // NumPy leaves room for the length to grow to 21 digits, so a writer
    // that appends data can rewrite the shape in place.
    header += String(repeating: " ", count: max(0, 21 - String(count).count))

    // Pad with spaces and end with a newline so that the 10-byte prefix plus
    // the header is a multiple of 64 bytes. Like NumPy, this adds 64 spaces
    // rather than none when the length is already a multiple.
    let unpadded = 10 + header.utf8.count + 1
    header += String(repeating: " ", count: 64 - unpadded % 64) + "\n"

    let length = header.utf8.count
    let prefix = magic + [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)]
    return prefix + Array(header.utf8)
  }
}
