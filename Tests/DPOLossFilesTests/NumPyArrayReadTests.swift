// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossFiles
import DPOLossTestSupport
import Foundation
import Testing

@Suite("NumPyArray reading")
struct NumPyArrayReadTests {
  @Test("float64 file maps in place")
  func float64MapsInPlace() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let expected = [-1.5, -0.25, -3e-5, -141.30167279770984]
    let path = try directory.write(
      makeNPY(
        header: npyDictionary(descr: "<f8", count: expected.count),
        data: float64Bytes(expected)
      ),
      to: "a.npy"
    )

    let array = try NumPyArray(contentsOf: path)

    #expect(array.count == 4)
    #expect(array.dtype == .float64)
    #expect(array.path == path)
    #expect(array.isMemoryMapped)
    #expect(values(of: array) == expected)
  }

  @Test("float32 widens exactly to Double")
  func float32WidensExactly() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let stored: [Float] = [
      0, -0.0, 1, -1.5, 0.1, -35.705284, .ulpOfOne, .leastNonzeroMagnitude,
      .leastNormalMagnitude, .greatestFiniteMagnitude, .infinity, -.infinity,
      .nan,
    ]
    let path = try directory.write(
      makeNPY(
        header: npyDictionary(descr: "<f4", count: stored.count),
        data: float32Bytes(stored)
      ),
      to: "a.npy"
    )

    let array = try NumPyArray(contentsOf: path)
    let loaded = values(of: array)

    #expect(array.dtype == .float32)
    #expect(!array.isMemoryMapped)
    #expect(loaded.count == stored.count)
    for (value, original) in zip(loaded, stored) where !original.isNaN {
      #expect(value == Double(original), "float32 \(original)")
      #expect(Float(value) == original, "float32 \(original)")
    }
    #expect(loaded.last?.isNaN == true)
  }

  @Test(
    "newer format versions load",
    arguments: [(UInt8(2), UInt8(0)), (UInt8(3), UInt8(0))]
  )
  func newerVersionsLoad(major: UInt8, minor: UInt8) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let expected = [-2.0, -4.0, -8.0]
    let path = try directory.write(
      makeNPY(
        header: npyDictionary(descr: "<f8", count: 3),
        version: (major, minor),
        data: float64Bytes(expected)
      ),
      to: "a.npy"
    )

    let array = try NumPyArray(contentsOf: path)

    #expect(array.isMemoryMapped)
    #expect(values(of: array) == expected)
  }

  @Test("version 3.0 header decodes UTF-8")
  func version3DecodesUTF8() throws {
    // A non-ASCII string in the header must not break parsing. It appears
    // in the error for the structured dtype that contains it.
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let header =
      "{'descr': [('größe', '<f8')], 'fortran_order': False, 'shape': (1,), }"
    let path = try directory.write(
      makeNPY(header: header, version: (3, 0), data: float64Bytes([1])),
      to: "a.npy"
    )

    let error = #expect(throws: NumPyFileError.self) {
      try NumPyArray(contentsOf: path)
    }

    #expect(
      error == .unsupportedDType(path: path, descr: "[('größe', '<f8')]")
    )
  }

  @Test("misaligned float64 data is copied", arguments: [1, 3, 4, 7])
  func misalignedDataIsCopied(misalignment: Int) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let expected = pseudoRandomLogProbs(count: 37, seed: 11)
    var header = npyDictionary(descr: "<f8", count: expected.count)
    // Pad so that 10 prefix bytes plus the header end `misalignment` bytes
    // past a multiple of 8.
    while (10 + header.utf8.count + 1) % 8 != misalignment {
      header += " "
    }
    header += "\n"
    let path = try directory.write(
      makeNPY(header: header, data: float64Bytes(expected), alignment: nil),
      to: "a.npy"
    )

    let array = try NumPyArray(contentsOf: path)

    #expect(!array.isMemoryMapped)
    #expect(values(of: array) == expected)
  }

  @Test("empty array loads", arguments: ["<f8", "<f4"])
  func emptyArrayLoads(descr: String) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = try directory.write(
      makeNPY(header: npyDictionary(descr: descr, count: 0)),
      to: "a.npy"
    )

    let array = try NumPyArray(contentsOf: path)

    #expect(array.count == 0)
    #expect(array.withSpan { $0.count } == 0)
  }

  @Test(
    "header variants parse",
    arguments: [
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
      "{'shape': (2,), 'descr': '<f8', 'fortran_order': False}",
      "{'fortran_order': False, 'shape': (2,), 'descr': '<f8'}",
      "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (2,)}",
      "  {  'descr' :'<f8' ,'fortran_order':False,'shape':( 2 , ) , }  ",
      "{'descr': '<f8',\n 'fortran_order': False,\n 'shape': (2L,)}\n",
      "{'descr':'<f8','fortran_order':False,'shape':(2,)}\t\r\n",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (+2,), }",
    ]
  )
  func headerVariantsParse(header: String) throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = try directory.write(
      makeNPY(header: header, data: float64Bytes([-1, -2])),
      to: "a.npy"
    )

    let array = try NumPyArray(contentsOf: path)

    #expect(values(of: array) == [-1, -2])
  }

  @Test("large array loads")
  func largeArrayLoads() throws {
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let expected = pseudoRandomLogProbs(count: 100_000, seed: 3)
    let path = try directory.write(
      makeNPY(
        header: npyDictionary(descr: "<f8", count: expected.count),
        data: float64Bytes(expected)
      ),
      to: "a.npy"
    )

    let array = try NumPyArray(contentsOf: path)

    #expect(array.count == 100_000)
    #expect(array.isMemoryMapped)
    #expect(firstMismatch(values(of: array), expected) == nil)
  }

  @Test("withSpan passes typed error through")
  func withSpanPassesTypedError() throws {
    struct StopReading: Error, Equatable {}
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let path = try directory.write(
      makeNPY(
        header: npyDictionary(descr: "<f8", count: 1),
        data: float64Bytes([-1])
      ),
      to: "a.npy"
    )
    let array = try NumPyArray(contentsOf: path)

    let error = #expect(throws: StopReading.self) {
      try array.withSpan { (_: Span<Double>) throws(StopReading) in
        throw StopReading()
      }
    }

    #expect(error == StopReading())
  }

  @Test("values outlive the file")
  func valuesOutliveTheFile() throws {
    // The mapping stays valid after the path is removed, because the
    // kernel keeps an unlinked file's pages until munmap.
    let directory = try TemporaryDirectory(prefix: "DPOLossFilesTests")
    let expected = [-7.0, -9.5]
    let path = try directory.write(
      makeNPY(
        header: npyDictionary(descr: "<f8", count: 2),
        data: float64Bytes(expected)
      ),
      to: "a.npy"
    )
    let array = try NumPyArray(contentsOf: path)

    try FileManager.default.removeItem(atPath: path)

    #expect(values(of: array) == expected)
  }
}
