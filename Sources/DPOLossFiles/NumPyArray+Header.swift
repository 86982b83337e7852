// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

extension NumPyArray {
  /// The element type, element count and data offset of a valid file.
  struct Layout {
    var dtype: DType
    var count: Int
    var dataOffset: Int
  }

  /// The `.npy` magic string, `\x93NUMPY`.
  static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]

  /// The maximum header length accepted, in bytes. It equals the default
  /// `max_header_size` of `numpy.load` in NumPy 2.4. A 1-D array needs
  /// under 128 bytes.
  static let maxHeaderLength = 10_000

  /// Reads and validates the prefix and header of an open `.npy` file.
  ///
  /// The prefix is the magic string, a major and minor version byte, and a
  /// little-endian header length: 2 bytes in version 1.0, 4 bytes in 2.0
  /// and 3.0. The data starts right after the header.
  static func readLayout(
    of file: borrowing ReadOnlyFile,
    path: String
  ) throws(NumPyFileError) -> Layout {
    let prefix = try readBytes(of: file, count: 12, at: 0, path: path)
    guard prefix.count >= magic.count, prefix.starts(with: magic) else {
      throw .notNumPyFile(path: path)
    }
    guard prefix.count >= 8 else {
      throw .malformedHeader(
        path: path,
        reason: "the file ends inside the version bytes"
      )
    }

    let lengthFieldSize: Int
    switch (prefix[6], prefix[7]) {
    case (1, 0):
      lengthFieldSize = 2
    case (2, 0), (3, 0):
      lengthFieldSize = 4
    default:
      throw .unsupportedVersion(path: path, major: prefix[6], minor: prefix[7])
    }
    guard prefix.count >= 8 + lengthFieldSize else {
      throw .malformedHeader(
        path: path,
        reason: "the file ends inside the header length field"
      )
    }

    var headerLength = 0
    for index in (8..<8 + lengthFieldSize).reversed() {
      headerLength = headerLength << 8 | Int(prefix[index])
    }
    guard headerLength <= maxHeaderLength else {
      throw .malformedHeader(
        path: path,
        reason: "the header length \(headerLength) exceeds the limit of "
          + "\(maxHeaderLength) bytes"
      )
    }
    let headerOffset = 8 + lengthFieldSize
    let dataOffset = headerOffset + headerLength
    guard dataOffset <= file.size else {
      throw .malformedHeader(
        path: path,
        reason: "the header length field gives \(headerLength) bytes, but "
          + "the file ends \(file.size - headerOffset) bytes after it"
      )
    }

    let headerBytes = try readBytes(
      of: file,
      count: headerLength,
      at: headerOffset,
      path: path
    )
    let header: NumPyHeader
    do {
      header = try headerBytes.withUnsafeBytes { bytes in
        // Version 3.0 stores the header as UTF-8, older ones as Latin-1.
        try NumPyHeader.parse(bytes, isUTF8: prefix[6] == 3)
      }
    } catch let error as HeaderParseError {
      throw .malformedHeader(path: path, reason: error.reason)
    } catch {
      preconditionFailure("NumPyHeader.parse throws only HeaderParseError")
    }

    return try validate(
      header,
      dataOffset: dataOffset,
      fileSize: file.size,
      path: path
    )
  }

  /// Checks the header's dtype, shape and order, and that the data after
  /// the header has exactly the size they require.
  private static func validate(
    _ header: NumPyHeader,
    dataOffset: Int,
    fileSize: Int,
    path: String
  ) throws(NumPyFileError) -> Layout {
    let dtype: DType
    switch header.descr {
    case .string("<f8"):
      dtype = .float64
    case .string("<f4"):
      dtype = .float32
    default:
      throw .unsupportedDType(
        path: path,
        descr: header.descr.pythonRepresentation
      )
    }
    guard header.shape.count == 1 else {
      throw .notOneDimensional(path: path, shape: header.shape)
    }
    guard !header.fortranOrder else {
      throw .fortranOrder(path: path)
    }

    let count = header.shape[0]
    let (expectedBytes, overflow) = count.multipliedReportingOverflow(
      by: dtype.byteCount
    )
    guard !overflow else {
      throw .malformedHeader(
        path: path,
        reason: "the shape (\(count),) is too large to address"
      )
    }
    let actualBytes = fileSize - dataOffset
    guard actualBytes == expectedBytes else {
      throw .dataSizeMismatch(
        path: path,
        expectedBytes: expectedBytes,
        actualBytes: actualBytes
      )
    }
    return Layout(dtype: dtype, count: count, dataOffset: dataOffset)
  }

  /// Reads up to `count` bytes at `offset` and returns the bytes read, which
  /// are fewer than `count` only when the file ends first.
  private static func readBytes(
    of file: borrowing ReadOnlyFile,
    count: Int,
    at offset: Int,
    path: String
  ) throws(NumPyFileError) -> [UInt8] {
    let buffer = UnsafeMutableRawBufferPointer.allocate(
      byteCount: count,
      alignment: 1
    )
    defer { buffer.deallocate() }
    do {
      let readCount = try file.read(into: buffer, at: offset)
      return Array(buffer[..<readCount])
    } catch {
      throw NumPyFileError(error, path: path)
    }
  }
}
