// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// An error that `NumPyArray(contentsOf:)` throws for a file it cannot load.
public enum NumPyFileError: Error, Equatable, Sendable,
  CustomStringConvertible
{
  /// No file exists at the path.
  case notFound(path: String)

  /// The path exists but cannot be read: it is a directory or another
  /// non-regular file, permission is denied, or mapping it failed.
  case unreadable(path: String, reason: String)

  /// The file does not start with the `.npy` magic string `\x93NUMPY`.
  case notNumPyFile(path: String)

  /// The format version is not 1.0, 2.0 or 3.0.
  case unsupportedVersion(path: String, major: UInt8, minor: UInt8)

  /// The header is not a valid dictionary literal with exactly the keys
  /// `descr`, `fortran_order` and `shape`, or the file ends inside it.
  case malformedHeader(path: String, reason: String)

  /// The dtype is not little-endian float64 (`<f8`) or float32 (`<f4`).
  /// `descr` is the header's descriptor as Python prints it, such as `'<i8'`.
  case unsupportedDType(path: String, descr: String)

  /// The array is not one-dimensional. An empty `shape` is a 0-d scalar.
  case notOneDimensional(path: String, shape: [Int])

  /// The header sets `fortran_order` to `True`.
  case fortranOrder(path: String)

  /// The data after the header is shorter or longer than the shape and
  /// dtype require.
  case dataSizeMismatch(path: String, expectedBytes: Int, actualBytes: Int)

  /// The path of the file that failed to load.
  public var path: String {
    switch self {
    case .notFound(let path), .unreadable(let path, _),
      .notNumPyFile(let path), .unsupportedVersion(let path, _, _),
      .malformedHeader(let path, _), .unsupportedDType(let path, _),
      .notOneDimensional(let path, _), .fortranOrder(let path),
      .dataSizeMismatch(let path, _, _):
      return path
    }
  }

  /// A message that names the file, the problem and the fix.
  public var description: String {
    switch self {
    case .notFound(let path):
      return "\(path): file not found. Check the path and the current "
        + "directory."
    case .unreadable(let path, let reason):
      return "\(path): cannot read the file (\(reason)). Pass a regular "
        + ".npy file that you have permission to read."
    case .notNumPyFile(let path):
      return "\(path): not a NumPy .npy file, because it does not start "
        + "with the magic string \\x93NUMPY. Save the array with "
        + "numpy.save(path, arr)."
    case .unsupportedVersion(let path, let major, let minor):
      return "\(path): unsupported .npy format version \(major).\(minor). "
        + "Versions 1.0, 2.0 and 3.0 are supported. Save the array again "
        + "with numpy.save(path, arr)."
    case .malformedHeader(let path, let reason):
      return "\(path): malformed .npy header: \(reason). Save the array "
        + "again with numpy.save(path, arr)."
    case .unsupportedDType(let path, let descr):
      let (words, fix) = describeDType(descr: descr)
      return "\(path): unsupported dtype \(descr) (\(words)). Only '<f8' "
        + "(little-endian float64) and '<f4' (little-endian float32) are "
        + "supported. \(fix)"
    case .notOneDimensional(let path, let shape):
      if shape.isEmpty {
        return "\(path): the array is a 0-d scalar (shape ()), but a 1-D "
          + "array is required. Save np.atleast_1d(arr) instead."
      }
      return "\(path): the array has shape \(formatShape(shape)), but a "
        + "1-D array is required. Save arr.reshape(-1) or one row."
    case .fortranOrder(let path):
      return "\(path): the header sets fortran_order to True, but only C "
        + "order is supported. Save np.ascontiguousarray(arr) instead."
    case .dataSizeMismatch(let path, let expected, let actual):
      if actual < expected {
        return "\(path): the file is truncated: the header's shape and "
          + "dtype need \(expected) bytes of data, but only \(actual) "
          + "follow the header. Copy or save the file again."
      }
      return "\(path): the file has \(actual) bytes of data after the "
        + "header, but the header's shape and dtype need \(expected). "
        + "Remove the trailing bytes or save the array again."
    }
  }
}

extension NumPyFileError {
  init(_ failure: ReadFailure, path: String) {
    switch failure {
    case .notFound:
      self = .notFound(path: path)
    case .unreadable(let reason):
      self = .unreadable(path: path, reason: reason)
    }
  }
}

/// Formats a shape as Python prints a tuple, such as `(3, 4)` or `(5,)`.
func formatShape(_ shape: [Int]) -> String {
  PythonLiteral.tuple(shape.map { .integer($0) }).pythonRepresentation
}

/// Returns a dtype descriptor in words, such as "64-bit integer" for
/// `'<i8'`, and the NumPy call that converts such an array to float64.
///
/// A descriptor string that is not a NumPy type string, such as the dtype
/// name `'float64'`, is described as "not a NumPy type string".
///
/// - Parameter descr: The descriptor as Python prints it, with quotes, or a
///   list for a structured dtype.
func describeDType(descr: String) -> (words: String, fix: String) {
  let convert = "Convert with arr.astype('<f8') and save again."
  if descr.hasPrefix("[") {
    return (
      "a structured dtype",
      "Save one field, for example arr['name'].astype('<f8')."
    )
  }
  guard let typeString = TypeString(quoted: descr) else {
    return (
      "not a NumPy type string",
      "Save the array again with numpy.save(path, arr.astype('<f8'))."
    )
  }

  let kind = typeString.kind
  let size = typeString.itemSize
  let bitsPrefix = typeString.bitCount.map { "\($0)-bit " } ?? ""
  let bits = typeString.bitCount.map(String.init) ?? ""
  let words: String
  switch kind {
  case "f":
    words = size == 2 ? "float16" : "float\(bits)"
  case "i":
    words = "\(bitsPrefix)integer"
  case "u":
    words = "\(bitsPrefix)unsigned integer"
  case "b", "?":
    words = "bool"
  case "c":
    words = "complex\(bits)"
  case "O":
    words = "object"
  case "S", "a":
    words = "byte string"
  case "U":
    words = "Unicode string"
  case "V":
    words = "raw bytes (void)"
  case "M":
    words = "datetime64"
  default:
    // TypeString accepts no other kind than m.
    words = "timedelta64"
  }

  if typeString.byteOrder == ">" {
    if kind == "f", let size, size == 4 || size == 8 {
      // A big-endian float needs only a byte swap, so keep its precision.
      return (
        "big-endian \(words)",
        "Convert with arr.astype('<f\(size)') and save again."
      )
    }
    return ("big-endian \(words)", convert)
  }
  if kind == "c" {
    return (words, "Keep the real part with arr.real.astype('<f8').")
  }
  return (words, convert)
}

/// The parts of a NumPy type string such as `'<f8'`: an optional byte
/// order, a kind character and an item size in bytes, and for datetime64
/// and timedelta64 an optional unit in brackets, as in `'<M8[ns]'`.
private struct TypeString {
  var byteOrder: Unicode.Scalar?
  var kind: Unicode.Scalar
  /// The item size in bytes, or `nil` if the string gives none.
  var itemSize: Int?

  /// The item size in bits, or `nil` if it is not given or too large.
  var bitCount: Int? {
    guard let itemSize else {
      return nil
    }
    let (bits, overflow) = itemSize.multipliedReportingOverflow(by: 8)
    return overflow ? nil : bits
  }

  /// Parses `quoted`, a Python string literal as
  /// `PythonLiteral.pythonRepresentation` prints it, or returns `nil` if
  /// its content is not a type string.
  init?(quoted: String) {
    var scalars = Substring(quoted).unicodeScalars
    guard scalars.count >= 2, scalars.first == "'", scalars.last == "'"
    else {
      return nil
    }
    scalars = scalars.dropFirst().dropLast()

    if let first = scalars.first, "<>|=".unicodeScalars.contains(first) {
      byteOrder = first
      scalars = scalars.dropFirst()
    }
    guard let kind = scalars.first,
      "fiubc?OSaUVMm".unicodeScalars.contains(kind)
    else {
      return nil
    }
    self.kind = kind
    scalars = scalars.dropFirst()

    let digits = scalars.prefix { ("0"..."9").contains($0) }
    itemSize = digits.isEmpty ? nil : Int(String(digits))
    scalars = scalars.dropFirst(digits.count)
    if kind == "M" || kind == "m", scalars.first == "[",
      scalars.last == "]", scalars.count > 2
    {
      // A unit such as ns, D or 10ms.
      let unit = scalars.dropFirst().dropLast()
      let isUnit = unit.allSatisfy { scalar in
        scalar.isASCII
          && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar))
      }
      if isUnit {
        scalars = scalars.dropFirst(scalars.count)
      }
    }
    guard scalars.isEmpty else {
      return nil
    }
  }
}
