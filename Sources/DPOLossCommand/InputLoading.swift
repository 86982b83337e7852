// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossFiles
import Glibc

/// An array of log-probs or weights, with the file it was read from.
struct InputArray {
  private enum Storage {
    /// A `.npy` file, memory-mapped for aligned float64 data.
    case numPy(NumPyArray)
    /// Values parsed from a text file.
    case values([Double])
  }

  private let storage: Storage

  /// The file that the values were read from.
  let path: String

  init(_ array: NumPyArray) {
    storage = .numPy(array)
    path = array.path
  }

  init(_ values: [Double], path: String) {
    storage = .values(values)
    self.path = path
  }

  var count: Int {
    switch storage {
    case .numPy(let array): array.count
    case .values(let values): values.count
    }
  }

  /// Faults in every page of a memory-mapped file, reading it from disk if
  /// it is not cached, so that reading the file counts as load time rather
  /// than compute time. Does nothing for values already in memory.
  ///
  /// NOTE: `MADV_POPULATE_READ` arrived in Linux 5.14. On older kernels
  /// `madvise(2)` fails, the failure is ignored, and the pages are read
  /// during the computation, whose time then includes the reading.
  func prefault() {
    guard case .numPy(let array) = storage, array.isMemoryMapped else {
      return
    }
    array.withSpan { span in
      span.withUnsafeBufferPointer { buffer in
        // madvise(2) needs a page-aligned start. The mapping starts at a
        // page boundary before the data and ends at one after it, so the
        // rounded range stays inside it.
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        let start = Int(bitPattern: buffer.baseAddress)
        let end = start + buffer.count * MemoryLayout<Double>.size
        let alignedStart = start - start % pageSize
        let alignedEnd = (end + pageSize - 1) / pageSize * pageSize
        _ = madvise(
          UnsafeMutableRawPointer(bitPattern: alignedStart),
          alignedEnd - alignedStart,
          MADV_POPULATE_READ
        )
      }
    }
  }

  /// Calls `body` with a span over the values, without copying them. The
  /// span is valid only during the call.
  func withSpan<Result, Failure: Error>(
    _ body: (Span<Double>) throws(Failure) -> Result
  ) throws(Failure) -> Result {
    switch storage {
    case .numPy(let array):
      return try array.withSpan(body)
    case .values(let values):
      return try body(values.span)
    }
  }
}

/// The four log-prob arrays of a batch, of equal non-zero length, and the
/// optional per-pair weights.
struct LoadedInputs {
  var policyChosen: InputArray
  var policyRejected: InputArray
  var referenceChosen: InputArray
  var referenceRejected: InputArray
  var weights: InputArray?

  /// The number of preference pairs.
  var count: Int { policyChosen.count }
}

/// Reads the log-probs and weights that `options` names, and checks that
/// the arrays have one value per preference pair.
///
/// - Throws: A `CommandError` of kind `.data` whose message names the file
///   and the problem: a file that is missing, unreadable or malformed, an
///   unsupported `.npy` dtype or shape, an empty array, arrays of different
///   lengths, or invalid weights.
func loadInputs(
  _ options: CommandOptions
) throws(CommandError) -> LoadedInputs {
  var inputs: LoadedInputs
  switch options.logProbSource {
  case .numPy(let pc, let pr, let rc, let rr):
    inputs = LoadedInputs(
      policyChosen: try loadNumPyArray(pc),
      policyRejected: try loadNumPyArray(pr),
      referenceChosen: try loadNumPyArray(rc),
      referenceRejected: try loadNumPyArray(rr)
    )
    try checkLengths(inputs)
  case .table(let path):
    // LogProbTable rejects a table without rows, and its columns have equal
    // length by construction.
    let table: LogProbTable
    do throws(LogProbTableError) {
      table = try LogProbTable(contentsOf: path)
    } catch {
      throw .data(error.description)
    }
    inputs = LoadedInputs(
      policyChosen: InputArray(table.policyChosen, path: path),
      policyRejected: InputArray(table.policyRejected, path: path),
      referenceChosen: InputArray(table.referenceChosen, path: path),
      referenceRejected: InputArray(table.referenceRejected, path: path)
    )
  }

  if let weightsPath = options.weightsPath {
    inputs.weights = try loadWeights(weightsPath, pairCount: inputs.count)
  }
  inputs.policyChosen.prefault()
  inputs.policyRejected.prefault()
  inputs.referenceChosen.prefault()
  inputs.referenceRejected.prefault()
  inputs.weights?.prefault()
  return inputs
}

/// Loads a 1-D float64 or float32 `.npy` file.
func loadNumPyArray(_ path: String) throws(CommandError) -> InputArray {
  do throws(NumPyFileError) {
    return InputArray(try NumPyArray(contentsOf: path))
  } catch {
    throw .data(error.description)
  }
}

/// Checks that the four `.npy` arrays are non-empty and of equal length.
private func checkLengths(_ inputs: LoadedInputs) throws(CommandError) {
  let arrays = [
    ("--policy-chosen", inputs.policyChosen),
    ("--policy-rejected", inputs.policyRejected),
    ("--reference-chosen", inputs.referenceChosen),
    ("--reference-rejected", inputs.referenceRejected),
  ]
  for (_, array) in arrays where array.count == 0 {
    throw .data(
      "\(array.path): the array is empty (shape (0,)). Pass at least one "
        + "preference pair."
    )
  }
  guard arrays.allSatisfy({ $0.1.count == inputs.count }) else {
    let counts = arrays.map { option, array in
      "\(option) \(array.path) has \(array.count)"
    }
    throw .data(
      "the log-prob arrays differ in length: "
        + counts.joined(separator: ", ")
        + " values. Pass one value per preference pair in each file."
    )
  }
}
