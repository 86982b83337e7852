// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossFiles
import Glibc

/// Reads the per-pair weights of `--weights` and checks them against the
/// batch.
///
/// A path that ends in `.npy`, in any capitalization, is read as a 1-D
/// float64 or float32 `.npy` array. Any other file is read as UTF-8 text
/// with one column (a one-column CSV or TSV file): one weight per line, in
/// the order of the pairs. Blank lines are skipped. If the first non-blank
/// line is not a number, it is a header and is skipped too. A line with a
/// comma, or a tab in a file whose name ends in `.tsv`, has more than one
/// field and is rejected. Spaces around a value and one pair of double
/// quotes are ignored.
///
/// - Parameters:
///   - path: The weights file.
///   - pairCount: The number of preference pairs in the batch.
/// - Throws: A `CommandError` of kind `.data` if the file cannot be read,
///   a value is not a number, is negative, NaN or infinite, the count
///   differs from `pairCount`, or every weight is 0. Text errors give the
///   line number and `.npy` errors the 0-based index.
func loadWeights(
  _ path: String,
  pairCount: Int
) throws(CommandError) -> InputArray {
  let weights: InputArray
  if path.lowercased().hasSuffix(".npy") {
    weights = try loadNumPyArray(path)
    try weights.withSpan { values throws(CommandError) in
      for index in 0..<values.count {
        try checkWeight(values[index], text: nil, at: "index \(index)", path)
      }
    }
  } else {
    weights = InputArray(try parseWeightsText(path), path: path)
  }

  guard weights.count == pairCount else {
    throw .data(
      "\(path): \(weights.count) weights for \(pairCount) preference "
        + "pairs. Pass one weight per pair, in the order of the log-probs."
    )
  }
  let hasPositiveWeight = weights.withSpan { values in
    (0..<values.count).contains { values[$0] > 0 }
  }
  guard hasPositiveWeight else {
    throw .data(
      "\(path): every weight is 0, so the weighted mean is undefined. Give "
        + "at least one pair a positive weight."
    )
  }
  return weights
}

/// Rejects a weight that is NaN, infinite or negative. `location` is the
/// line or index for the message.
private func checkWeight(
  _ weight: Double,
  text: String?,
  at location: String,
  _ path: String
) throws(CommandError) {
  guard weight.isFinite, weight >= 0 else {
    throw .data(
      "\(path): invalid weight \(text ?? weight.description) at "
        + "\(location). Weights must be finite and non-negative. Use 0 to "
        + "mask a pair."
    )
  }
}

/// Parses a one-column text file of weights, as `loadWeights` describes.
private func parseWeightsText(_ path: String) throws(CommandError)
  -> [Double]
{
  var bytes = try readFile(path)
  let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]
  if bytes.starts(with: byteOrderMark) {
    bytes.removeFirst(byteOrderMark.count)
  }
  let delimiter: Character =
    path.lowercased().hasSuffix(".tsv") ? "\t" : ","

  var weights: [Double] = []
  var isFirstNonBlankLine = true
  let lines = bytes.split(
    separator: UInt8(ascii: "\n"),
    omittingEmptySubsequences: false
  )
  for (offset, lineBytes) in lines.enumerated() {
    let lineNumber = offset + 1
    var line = String(decoding: lineBytes, as: UTF8.self)
    if line.hasSuffix("\r") {
      line.removeLast()
    }
    if line.allSatisfy({ $0 == " " || $0 == "\t" }) {
      continue
    }

    let fieldCount = line.split(
      separator: delimiter,
      omittingEmptySubsequences: false
    ).count
    guard fieldCount == 1 else {
      let name = delimiter == "\t" ? "tab" : "comma"
      throw .data(
        "\(path):\(lineNumber): the line has \(fieldCount) fields, but a "
          + "weights file has one column. Remove the other columns or the "
          + "extra \(name)."
      )
    }
    let text = trimField(line)
    let weight = Double(text)
    if isFirstNonBlankLine && weight == nil {
      // A header line such as "weight".
      isFirstNonBlankLine = false
      continue
    }
    isFirstNonBlankLine = false

    guard let weight else {
      let cellDescription = text.isEmpty ? "an empty field" : "'\(text)'"
      throw .data(
        "\(path):\(lineNumber): \(cellDescription) is not a number. Write one "
          + "decimal weight per line, or 0 to mask a pair."
      )
    }
    try checkWeight(weight, text: text, at: "line \(lineNumber)", path)
    weights.append(weight)
  }
  return weights
}

/// Removes spaces and tabs around `field`, then one pair of double quotes.
private func trimField(_ field: String) -> String {
  var text = Substring(field)
  while let first = text.first, first == " " || first == "\t" {
    text.removeFirst()
  }
  while let last = text.last, last == " " || last == "\t" {
    text.removeLast()
  }
  if text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\"") {
    text = text.dropFirst().dropLast()
  }
  return String(text)
}

/// Reads a whole regular file.
private func readFile(_ path: String) throws(CommandError) -> [UInt8] {
  let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
  guard descriptor >= 0 else {
    let code = errno
    if code == ENOENT {
      throw .data(
        "\(path): file not found. Check the path and the current directory."
      )
    }
    throw .data(
      "\(path): cannot read the file (\(errorText(code))). Pass a weights "
        + "file that you have permission to read."
    )
  }
  defer { close(descriptor) }

  var status = stat()
  guard fstat(descriptor, &status) == 0 else {
    throw .data(
      "\(path): cannot read the file (\(errorText(errno))). Check the file."
    )
  }
  guard status.st_mode & S_IFMT == S_IFREG else {
    throw .data(
      "\(path): cannot read the file (it is not a regular file). Pass a "
        + "weights file."
    )
  }

  var bytes: [UInt8] = []
  var chunk = [UInt8](repeating: 0, count: 1 << 16)
  while true {
    let readCount = chunk.withUnsafeMutableBytes { buffer in
      read(descriptor, buffer.baseAddress, buffer.count)
    }
    if readCount < 0 {
      let code = errno
      if code == EINTR {
        continue
      }
      throw .data(
        "\(path): reading the file failed (\(errorText(code))). Check the "
          + "file and the disk."
      )
    }
    if readCount == 0 {
      return bytes
    }
    bytes.append(contentsOf: chunk[..<readCount])
  }
}

/// Returns the C library's message for an `errno` value.
func errorText(_ code: Int32) -> String {
  String(cString: strerror(code))
}
