// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossFiles
import DPOLossTestSupport
import Foundation
import Testing

@Suite("NumPyArray writing")
struct NumPyArrayWriteTests {
  @Test("header matches numpy.save output")
  func headerMatchesNumPySave() throws {
    // The bytes that numpy.save(path, np.zeros(3)) writes in NumPy 2.4.6:
    // the prefix, the dictionary, 21 - 1 spaces of room for the length to
    // grow, and padding to 128 bytes.
    let dictionary =
      "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"
    let expectedHeader =
      [0x93] + Array("NUMPY".utf8) + [1, 0, 0x76, 0]
      + Array(dictionary.utf8)
      + [UInt8](repeating: 0x20, count: 128 - 10 - dictionary.utf8.count - 1)
      + [0x0A]
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("zeros.npy")

    try NumPyArray.write([0, 0, 0], to: path)
    let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))

    #expect(bytes.count == 128 + 24)
    #expect(Array(bytes.prefix(128)) == expectedHeader)
    #expect(bytes.suffix(24).allSatisfy { $0 == 0 })
  }

  @Test(
    "data starts at 64-byte boundary",
    arguments: [0, 1, 9, 10, 99, 100, 12_345, 65_536]
  )
  func dataStartsAtBoundary(count: Int) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("a.npy")

    try NumPyArray.write(Array(repeating: -1, count: count), to: path)
    let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8

    #expect((10 + headerLength) % 64 == 0)
    #expect(bytes[10 + headerLength - 1] == 0x0A)
    #expect(bytes.count == 10 + headerLength + 8 * count)
  }

  @Test("special values round trip")
  func specialValuesRoundTrip() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("special.npy")

    try NumPyArray.write(specialDoubles, to: path)
    let array = try NumPyArray(contentsOf: path)

    #expect(array.dtype == .float64)
    #expect(array.isMemoryMapped)
    #expect(bitPatterns(values(of: array)) == bitPatterns(specialDoubles))
  }

  @Test("span and array writes agree")
  func spanAndArrayWritesAgree() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let values = pseudoRandomLogProbs(count: 20_000, seed: 5)
    let arrayPath = directory.file("array.npy")
    let spanPath = directory.file("span.npy")

    try NumPyArray.write(values, to: arrayPath)
    try NumPyArray.write(values.span, to: spanPath)

    let arrayBytes = try Data(contentsOf: URL(fileURLWithPath: arrayPath))
    let spanBytes = try Data(contentsOf: URL(fileURLWithPath: spanPath))
    #expect(arrayBytes == spanBytes)
  }

  @Test("empty array round trips")
  func emptyArrayRoundTrips() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("empty.npy")

    try NumPyArray.write([], to: path)
    let array = try NumPyArray(contentsOf: path)

    #expect(array.count == 0)
  }

  @Test("large array round trips")
  func largeArrayRoundTrips() throws {
    // 300,000 values need more than one 1 MiB write buffer.
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("large.npy")
    let expected = pseudoRandomLogProbs(count: 300_000, seed: 17)

    try NumPyArray.write(expected, to: path)
    let array = try NumPyArray(contentsOf: path)

    #expect(array.count == expected.count)
    #expect(firstMismatch(values(of: array), expected) == nil)
  }

  @Test("write replaces existing file")
  func writeReplacesExistingFile() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = try directory.write("old contents", to: "a.npy")

    try NumPyArray.write([-1, -2], to: path)

    #expect(values(of: try NumPyArray(contentsOf: path)) == [-1, -2])
    #expect(try directory.entries() == ["a.npy"])
  }

  @Test("missing directory throws createFailed")
  func missingDirectoryThrowsCreateFailed() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("absent/a.npy")

    let error = #expect(throws: FileWriteError.self) {
      try NumPyArray.write([-1], to: path)
    }

    #expect(
      error
        == .createFailed(path: path, reason: String(cString: strerror(ENOENT)))
    )
    #expect(error?.description.contains(path) == true)
    #expect(try directory.entries() == [])
  }

  @Test("directory destination throws renameFailed")
  func directoryDestinationThrowsRenameFailed() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.file("target")
    try FileManager.default.createDirectory(
      atPath: path,
      withIntermediateDirectories: false
    )
    try directory.write("keep", to: "target/inside")

    let error = #expect(throws: FileWriteError.self) {
      try NumPyArray.write([-1], to: path)
    }

    guard case .renameFailed(let errorPath, _) = error else {
      Issue.record("expected renameFailed, got \(String(describing: error))")
      return
    }
    #expect(errorPath == path)
    #expect(try directory.entries() == ["target"])
  }

  @Test("trailing slash throws createFailed")
  func trailingSlashThrowsCreateFailed() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = directory.path + "/"

    let error = #expect(throws: FileWriteError.self) {
      try NumPyArray.write([-1], to: path)
    }

    #expect(
      error == .createFailed(path: path, reason: "the path names a directory")
    )
  }
}
