// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossFiles
import DPOLossTestSupport
import Foundation
import Testing

@Suite("NumPyArray errors")
struct NumPyArrayErrorTests {
  /// Writes `bytes` to a file and returns the error that loading it throws.
  private func loadError(
    _ bytes: [UInt8],
    in directory: TemporaryDirectory
  ) throws -> (path: String, error: NumPyFileError?) {
    let path = try directory.write(bytes, to: "bad.npy")
    let error = #expect(throws: NumPyFileError.self) {
      try NumPyArray(contentsOf: path)
    }
    return (path, error)
  }

  @Test("missing file throws notFound")
  func missingFileThrowsNotFound() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("absent.npy")

    let error = #expect(throws: NumPyFileError.self) {
      try NumPyArray(contentsOf: path)
    }

    #expect(error == .notFound(path: path))
    #expect(error?.description.contains(path) == true)
    #expect(error?.description.contains("not found") == true)
  }

  @Test("directory throws unreadable")
  func directoryThrowsUnreadable() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")

    let error = #expect(throws: NumPyFileError.self) {
      try NumPyArray(contentsOf: directory.path)
    }

    #expect(
      error == .unreadable(path: directory.path, reason: "it is a directory")
    )
    #expect(error?.description.contains("cannot read") == true)
  }

  @Test(
    "permission denied throws unreadable",
    .enabled(if: getuid() != 0, "root can read files without permission")
  )
  func permissionDeniedThrowsUnreadable() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = try directory.write(
      makeNPY(header: npyDictionary(descr: "<f8", count: 0)),
      to: "locked.npy"
    )
    chmod(path, 0)

    let error = #expect(throws: NumPyFileError.self) {
      try NumPyArray(contentsOf: path)
    }

    #expect(
      error
        == .unreadable(path: path, reason: String(cString: strerror(EACCES)))
    )
  }

  @Test(
    "bad magic throws notNumPyFile",
    arguments: [
      [], [0x93, 0x4E, 0x55], Array("policy_chosen,policy_rejected\n".utf8),
      [0x93] + Array("NUMPX".utf8) + [1, 0, 0, 0],
    ] as [[UInt8]]
  )
  func badMagicThrowsNotNumPyFile(bytes: [UInt8]) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")

    let (path, error) = try loadError(bytes, in: directory)

    #expect(error == .notNumPyFile(path: path))
    #expect(error?.description.contains("\\x93NUMPY") == true)
  }

  @Test(
    "unknown version throws unsupportedVersion",
    arguments: [(UInt8(4), UInt8(0)), (1, 1), (0, 0)]
  )
  func unknownVersionThrows(major: UInt8, minor: UInt8) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let bytes = makeNPY(
      header: npyDictionary(descr: "<f8", count: 0),
      version: (major, minor)
    )

    let (path, error) = try loadError(bytes, in: directory)

    #expect(
      error == .unsupportedVersion(path: path, major: major, minor: minor)
    )
    #expect(error?.description.contains("\(major).\(minor)") == true)
  }

  @Test(
    "malformed header throws malformedHeader",
    arguments: [
      ("[1, 2]", "not a dictionary"),
      ("{'descr': '<f8', 'fortran_order': False}", "missing key 'shape'"),
      ("{'descr': '<f8', 'shape': (0,)}", "missing key 'fortran_order'"),
      (
        "{'descr': '<f8', 'fortran_order': False, 'shape': (0,), 'x': 1}",
        "unexpected key 'x'"
      ),
      (
        "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, "
          + "'shape': (0,)}",
        "key 'descr' appears twice"
      ),
      (
        "{'descr': '<f8', 'fortran_order': False, 'shape': (0)}", "'shape' is 0"
      ),
      (
        "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}",
        "'shape' is (-1,)"
      ),
      (
        "{'descr': '<f8', 'fortran_order': 'no', 'shape': (0,)}",
        "'fortran_order' is 'no'"
      ),
      ("{'descr': 8, 'fortran_order': False, 'shape': (0,)}", "'descr' is 8"),
      (
        "{'descr': '<f8', 'fortran_order': False, 'shape': (0,)} x",
        "unexpected text after the closing '}'"
      ),
      ("{'descr': '<f8', 'fortran_order': False", "expected ',' or '}'"),
      ("{'descr: '<f8'}", "expected ':'"),
      ("{'descr': <f8}", "unexpected '<'"),
      (
        "{'descr': '<f8', 'fortran_order': Nope, 'shape': (0,)}",
        "unexpected 'Nope'"
      ),
      (
        "{'descr': '<f8', 'fortran_order': False, "
          + "'shape': (99999999999999999999,)}",
        "an integer is too large"
      ),
      (
        "{'descr': '<f8', 'fortran_order': False, "
          + "'shape': (9223372036854775807,)}",
        "too large to address"
      ),
      (
        "{'descr': " + String(repeating: "[", count: 5000) + "}",
        "brackets nest deeper than 32 levels"
      ),
    ]
  )
  func malformedHeaderThrows(header: String, reason: String) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")

    let (path, error) = try loadError(makeNPY(header: header), in: directory)

    guard case .malformedHeader(let errorPath, let errorReason) = error else {
      Issue.record("expected malformedHeader, got \(String(describing: error))")
      return
    }
    #expect(errorPath == path)
    #expect(errorReason.contains(reason), "reason: \(errorReason)")
  }

  @Test("header past end of file is malformed")
  func headerPastEndIsMalformed() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    // The length field gives 118 bytes, but only 20 follow.
    let bytes =
      [0x93] + Array("NUMPY".utf8) + [1, 0, 118, 0]
      + Array("{'descr': '<f8', 'fo".utf8)

    let (path, error) = try loadError(bytes, in: directory)

    #expect(
      error
        == .malformedHeader(
          path: path,
          reason: "the header length field gives 118 bytes, but the file "
            + "ends 20 bytes after it"
        )
    )
  }

  @Test("oversized header is malformed")
  func oversizedHeaderIsMalformed() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let header =
      npyDictionary(descr: "<f8", count: 0)
      + String(repeating: " ", count: 10_000)
    let bytes = makeNPY(header: header, version: (2, 0))

    let (_, error) = try loadError(bytes, in: directory)

    guard case .malformedHeader(_, let reason) = error else {
      Issue.record("expected malformedHeader, got \(String(describing: error))")
      return
    }
    #expect(reason.contains("exceeds the limit of 10000 bytes"))
  }

  @Test(
    "unsupported dtypes are named",
    arguments: [
      ("<i8", "64-bit integer", "arr.astype('<f8')"),
      ("<i4", "32-bit integer", "arr.astype('<f8')"),
      ("<u2", "16-bit unsigned integer", "arr.astype('<f8')"),
      ("<f2", "float16", "arr.astype('<f8')"),
      ("<f16", "float128", "arr.astype('<f8')"),
      ("<c16", "complex128", "arr.real.astype('<f8')"),
      (">f8", "big-endian float64", "arr.astype('<f8')"),
      (">f4", "big-endian float32", "arr.astype('<f4')"),
      (">i8", "big-endian 64-bit integer", "arr.astype('<f8')"),
      ("|b1", "bool", "arr.astype('<f8')"),
      ("|O", "object", "arr.astype('<f8')"),
      ("<U7", "Unicode string", "arr.astype('<f8')"),
      ("|S7", "byte string", "arr.astype('<f8')"),
      ("<M8[ns]", "datetime64", "arr.astype('<f8')"),
      ("=f8", "float64", "arr.astype('<f8')"),
    ]
  )
  func unsupportedDTypesAreNamed(
    descr: String,
    words: String,
    fix: String
  ) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let bytes = makeNPY(header: npyDictionary(descr: descr, count: 0))

    let (path, error) = try loadError(bytes, in: directory)

    #expect(error == .unsupportedDType(path: path, descr: "'\(descr)'"))
    let message = error?.description ?? ""
    #expect(message.contains("'\(descr)' (\(words))"), "message: \(message)")
    #expect(message.contains(fix), "message: \(message)")
    #expect(message.contains(path), "message: \(message)")
  }

  @Test(
    "odd descr is not type string",
    arguments: [
      ("float64", "'float64'"), ("f\u{FF18}", "'f\u{FF18}'"),
      ("\u{E9}8", "'\u{E9}8'"), ("\u{01}<f8", "'\\x01<f8'"),
      ("<f8\n", "'<f8\\n'"), ("", "''"), ("<i8x", "'<i8x'"),
      ("<x8", "'<x8'"), ("<M8[n s]", "'<M8[n s]'"),
    ]
  )
  func oddDescrIsNotTypeString(descr: String, printedDescr: String) throws {
    // Version 3.0 stores the header as UTF-8.
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let bytes = makeNPY(
      header: npyDictionary(descr: descr, count: 0),
      version: (3, 0)
    )

    let (path, error) = try loadError(bytes, in: directory)

    #expect(error == .unsupportedDType(path: path, descr: printedDescr))
    let message = error?.description ?? ""
    #expect(
      message.contains("\(printedDescr) (not a NumPy type string)"),
      "message: \(message)"
    )
    #expect(message.contains("Only '<f8'"), "message: \(message)")
    #expect(message.contains("'<f4'"), "message: \(message)")
    #expect(message.contains("astype('<f8')"), "message: \(message)")
    #expect(!message.contains("?"), "message: \(message)")
  }

  @Test("structured dtype is named")
  func structuredDTypeIsNamed() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let header =
      "{'descr': [('a', '<f8'), ('b', '<i4')], 'fortran_order': False, "
      + "'shape': (0,), }"

    let (path, error) = try loadError(makeNPY(header: header), in: directory)

    #expect(
      error
        == .unsupportedDType(path: path, descr: "[('a', '<f8'), ('b', '<i4')]")
    )
    #expect(error?.description.contains("a structured dtype") == true)
  }

  @Test(
    "wrong dimension count throws",
    arguments: [
      ([2, 3], "(2, 3)"), ([1, 1, 1], "(1, 1, 1)"), ([], "0-d scalar"),
      ([0, 4], "(0, 4)"),
    ]
  )
  func wrongDimensionCountThrows(shape: [Int], phrase: String) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let headerShape =
      shape.isEmpty
      ? "()"
      : shape.count == 1
        ? "(\(shape[0]),)"
        : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    let header =
      "{'descr': '<f8', 'fortran_order': False, 'shape': \(headerShape), }"
    let elementCount = shape.reduce(1, *)
    let bytes = makeNPY(
      header: header,
      data: float64Bytes(Array(repeating: -1, count: elementCount))
    )

    let (path, error) = try loadError(bytes, in: directory)

    #expect(error == .notOneDimensional(path: path, shape: shape))
    #expect(error?.description.contains(phrase) == true)
  }

  @Test("Fortran order throws fortranOrder")
  func fortranOrderThrows() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let header = "{'descr': '<f8', 'fortran_order': True, 'shape': (2,), }"
    let bytes = makeNPY(header: header, data: float64Bytes([-1, -2]))

    let (path, error) = try loadError(bytes, in: directory)

    #expect(error == .fortranOrder(path: path))
    #expect(error?.description.contains("fortran_order") == true)
  }

  @Test(
    "truncated data throws size mismatch",
    arguments: [("<f8", 3, 24), ("<f4", 3, 12)]
  )
  func truncatedDataThrows(
    descr: String,
    count: Int,
    expectedBytes: Int
  ) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let data = [UInt8](repeating: 0, count: expectedBytes - 5)
    let bytes = makeNPY(
      header: npyDictionary(descr: descr, count: count),
      data: data
    )

    let (path, error) = try loadError(bytes, in: directory)

    #expect(
      error
        == .dataSizeMismatch(
          path: path,
          expectedBytes: expectedBytes,
          actualBytes: expectedBytes - 5
        )
    )
    let message = error?.description ?? ""
    #expect(message.contains("truncated"), "message: \(message)")
    #expect(message.contains("\(expectedBytes) bytes"), "message: \(message)")
    #expect(
      message.contains("only \(expectedBytes - 5)"),
      "message: \(message)"
    )
  }

  @Test("trailing bytes throw size mismatch")
  func trailingBytesThrow() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let bytes = makeNPY(
      header: npyDictionary(descr: "<f8", count: 2),
      data: float64Bytes([-1, -2, -3])
    )

    let (path, error) = try loadError(bytes, in: directory)

    #expect(
      error
        == .dataSizeMismatch(path: path, expectedBytes: 16, actualBytes: 24)
    )
    #expect(error?.description.contains("24 bytes of data") == true)
  }

  @Test("empty shape with data throws")
  func emptyShapeWithDataThrows() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let bytes = makeNPY(
      header: npyDictionary(descr: "<f8", count: 0),
      data: float64Bytes([-1])
    )

    let (path, error) = try loadError(bytes, in: directory)

    #expect(
      error == .dataSizeMismatch(path: path, expectedBytes: 0, actualBytes: 8)
    )
  }
}
