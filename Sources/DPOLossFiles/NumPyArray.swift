// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import Glibc

/// A one-dimensional float64 or float32 array loaded from a NumPy `.npy`
/// file.
///
/// Format versions 1.0, 2.0 and 3.0 with a little-endian, C-order 1-D array
/// load. A float64 file whose data offset is a multiple of 8 is mapped
/// read-only with `mmap(2)` and read in place, which is the case for files
/// that NumPy writes because it pads the header to 64 bytes. Other float64
/// files, and every float32 file, are converted into an owned float64
/// buffer.
///
/// NOTE: A mapped file must not be truncated while the array is alive.
/// Reading the values after another process shortens the file raises
/// `SIGBUS`.
public final class NumPyArray: @unchecked Sendable {
  // Sendable is sound because the storage is immutable after `init`: the
  // mapping is read-only, and the owned buffer is written only before `init`
  // returns.

  /// The element type stored in a `.npy` file.
  public enum DType: String, Sendable, Equatable {
    /// IEEE 754 binary64, descriptor `'<f8'`.
    case float64
    /// IEEE 754 binary32, descriptor `'<f4'`, widened exactly to `Double`.
    case float32

    /// The size of one stored element in bytes.
    public var byteCount: Int {
      self == .float64 ? 8 : 4
    }
  }

  private enum Storage {
    case empty
    case mapped(base: UnsafeMutableRawPointer, length: Int)
    case owned
  }

  /// The path that the array was loaded from.
  public let path: String

  /// The element type stored in the file.
  public let dtype: DType

  /// The number of elements.
  public let count: Int

  private let elements: UnsafeBufferPointer<Double>
  private let storage: Storage

  /// Whether the values are read in place from a memory mapping of the file
  /// rather than from a converted copy.
  public var isMemoryMapped: Bool {
    if case .mapped = storage {
      return true
    }
    return false
  }

  /// Loads a 1-D little-endian float64 or float32 array from a `.npy` file.
  ///
  /// The header must be a dictionary with exactly the keys `descr`,
  /// `fortran_order` and `shape`, in any order. A shape of `(0,)` loads as
  /// an empty array, so callers that need data must check `count`.
  ///
  /// - Parameter path: The path of the `.npy` file.
  /// - Throws: A `NumPyFileError`:
  ///   - `.notFound` if nothing exists at `path`.
  ///   - `.unreadable` for a directory or another non-regular file, or if
  ///     a read or `mmap(2)` fails.
  ///   - `.notNumPyFile` if the file does not start with the magic string.
  ///   - `.unsupportedVersion` for versions other than 1.0, 2.0 and 3.0.
  ///   - `.malformedHeader` for a header that is not a valid dictionary
  ///     literal with the three keys.
  ///   - `.unsupportedDType` for any dtype other than `'<f8'` and `'<f4'`.
  ///   - `.notOneDimensional` for a 0-d or multi-dimensional shape.
  ///   - `.fortranOrder` if `fortran_order` is `True`.
  ///   - `.dataSizeMismatch` if the data is shorter or longer than the
  ///     header requires.
  /// - Complexity: O(1) time and no allocation beyond the header for an
  ///   aligned float64 file, because pages are read on first access. O(n)
  ///   time and 8n bytes for float32 or misaligned float64 data, where n is
  ///   `count`.
  public init(contentsOf path: String) throws(NumPyFileError) {
    let file: ReadOnlyFile
    do {
      file = try ReadOnlyFile(path: path)
    } catch {
      throw NumPyFileError(error, path: path)
    }

    let layout = try Self.readLayout(of: file, path: path)
    self.path = path
    self.dtype = layout.dtype
    self.count = layout.count

    if layout.count == 0 {
      elements = UnsafeBufferPointer(start: nil, count: 0)
      storage = .empty
      return
    }

    let base: UnsafeMutableRawPointer
    do {
      base = try file.mapReadOnly()
    } catch {
      throw NumPyFileError(error, path: path)
    }
    let data = UnsafeRawPointer(base + layout.dataOffset)

    // Reading in place needs 8-byte alignment for Double and a host that
    // stores Double little-endian, as the file does.
    let isAligned =
      Int(bitPattern: data) % MemoryLayout<Double>.alignment == 0
    if layout.dtype == .float64 && isAligned && Self.hostIsLittleEndian {
      elements = UnsafeBufferPointer(
        start: data.assumingMemoryBound(to: Double.self),
        count: layout.count
      )
      storage = .mapped(base: base, length: file.size)
      return
    }

    elements = Self.convertToDouble(
      data,
      count: layout.count,
      dtype: layout.dtype
    )
    storage = .owned
    munmap(base, file.size)
  }

  deinit {
    switch storage {
    case .empty:
      break
    case .mapped(let base, let length):
      munmap(base, length)
    case .owned:
      elements.deallocate()
    }
  }

  /// Calls `body` with a span over the values, without copying them.
  ///
  /// The span is valid only during the call and must not escape it.
  /// - Parameter body: A closure that reads the values.
  /// - Returns: The value that `body` returns.
  /// - Throws: Only what `body` throws.
  /// - Complexity: O(1) and no allocation.
  public func withSpan<R, E: Error>(
    _ body: (Span<Double>) throws(E) -> R
  ) throws(E) -> R {
    let buffer = elements
    return try body(buffer.span)
  }

  private static let hostIsLittleEndian = UInt16(littleEndian: 1) == 1

  /// Copies little-endian float64 or float32 values from `data`, which
  /// need not be aligned, into a new buffer of `Double`.
  private static func convertToDouble(
    _ data: UnsafeRawPointer,
    count: Int,
    dtype: DType
  ) -> UnsafeBufferPointer<Double> {
    let buffer = UnsafeMutableBufferPointer<Double>.allocate(capacity: count)
    switch dtype {
    case .float64:
      for index in 0..<count {
        let bits = data.loadUnaligned(
          fromByteOffset: index * 8,
          as: UInt64.self
        )
        buffer.initializeElement(
          at: index,
          to: Double(bitPattern: UInt64(littleEndian: bits))
        )
      }
    case .float32:
      for index in 0..<count {
        let bits = data.loadUnaligned(
          fromByteOffset: index * 4,
          as: UInt32.self
        )
        // Widening is exact for every finite value and infinity, and NaN
        // stays NaN.
        let value = Float(bitPattern: UInt32(littleEndian: bits))
        buffer.initializeElement(at: index, to: Double(value))
      }
    }
    return UnsafeBufferPointer(buffer)
  }
}
