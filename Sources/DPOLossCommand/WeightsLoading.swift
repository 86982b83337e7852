// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLoss
import DPOLossFiles
import Glibc

/// Reads the per-pair weights of `--weights` and checks them against the
/// batch.
///
/// A path that ends in `.npy`, in any capitalization, is read as a 1-D
/// float64 or float32 `.npy` array. Any other file is read as UTF-8 text
/// with one column (a one-column CSV or TSV file): one weight per line, in
/// the order of the pairs. Blank lines are skipped. The first non-blank
/// line is a header, and is skipped too, in two cases. One is when its
/// first character after spaces and an opening double quote is a letter,
/// unless the line is one of the words nan, inf and infinity. The other is
/// when it starts with a double quote that is never closed. So a typo such
/// as `1_0` on the first line is reported as an invalid number rather than
/// taken as a header. A
/// line with a comma, or a tab in a file whose name ends in `.tsv`, has
/// more than one field and is rejected. Spaces around a value and one pair
/// of double quotes are ignored. Values are parsed by
/// `parseDecimalNumber(_:)`, as table cells are, so hexadecimal floats and
/// finite text that overflows a double, such as `1e400`, are rejected.
///
/// - Parameters:
///   - path: The weights file.
///   - pairCount: The number of preference pairs in the batch.
/// - Throws: A `CommandError` of kind `.data` if the file cannot be read,
///   the count differs from `pairCount`, or a text value is not a decimal
///   number or is negative, NaN or infinite (with its line number). The
///   kernel checks the values of a `.npy` file, the zero total and the sum's
///   overflow, and `kernelWeightError(_:weights:)` names this file in its
///   messages.
func loadWeights(
  _ path: String,
  pairCount: Int
) throws(CommandError) -> InputArray {
  let weights: InputArray
  if path.lowercased().hasSuffix(".npy") {
    weights = try loadNumPyArray(path)
  } else {
    weights = InputArray(try parseWeightsText(path), path: path)
  }

  guard weights.count == pairCount else {
    throw .data(
      "\(path): \(weights.count) weights for \(pairCount) preference "
        + "pairs. Pass one weight per pair, in the order of the log-probs."
    )
  }
  return weights
}

/// Returns the message for a weights error of the kernel, naming the
/// weights file, or `nil` for an error that is not about the weights.
func kernelWeightError(
  _ error: DPOLossError,
  weights: InputArray
) -> CommandError? {
  switch error {
  case .invalidWeight(let index, let value):
    return .data(
      "\(weights.path): invalid weight \(value) at index \(index). Weights "
        + "must be finite and non-negative. Use 0 to mask a pair."
    )
  case .zeroTotalWeight:
    return .data(
      "\(weights.path): every weight is 0, so the weighted mean is "
        + "undefined. Give at least one pair a positive weight."
    )
  case .weightSumOverflow:
    let largest = weights.withSpan { values in
      (0..<values.count).map { values[$0] }.max() ?? 0
    }
    return .data(
      "\(weights.path): the weights sum to infinity in double precision "
        + "(the largest is \(largest)). Scale them down, because only their "
        + "ratios change the loss and metrics."
    )
  default:
    return nil
  }
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
    if isFirstNonBlankLine && isHeader(text) {
      isFirstNonBlankLine = false
      continue
    }
    isFirstNonBlankLine = false

    let weight = try parseWeight(text, lineNumber: lineNumber, path)
    try checkWeight(weight, text: text, at: "line \(lineNumber)", path)
    weights.append(weight)
  }
  return weights
}

/// Returns whether `field`, the trimmed first non-blank line, is a header
/// such as `weight`. A header starts with a letter and is not one of the
/// words nan, inf and infinity, which are numbers. It may also start with
/// a double quote that `trimField` left because it has no closing quote.
private func isHeader(_ field: String) -> Bool {
  guard let first = field.first else {
    return false
  }
  if first == "\"" {
    return true
  }
  return first.isLetter
    && !["nan", "inf", "infinity"].contains(field.lowercased())
}

/// Parses one trimmed weight, or throws an error that names the line.
private func parseWeight(
  _ text: String,
  lineNumber: Int,
  _ path: String
) throws(CommandError) -> Double {
  let location = "\(path):\(lineNumber)"
  do throws(NumberTextError) {
    return try parseDecimalNumber(text)
  } catch .hexadecimal {
    throw .data(
      "\(location): '\(text)' is a hexadecimal float. Write the weight in "
        + "decimal notation" + decimalEquivalent(of: text) + "."
    )
  } catch .outOfRange {
    throw .data(
      "\(location): '\(shortened(text))' is outside the range of a double "
        + "(largest magnitude \(Double.greatestFiniteMagnitude)). Weights "
        + "must be finite. Scale them down, because only their ratios "
        + "change the loss and metrics."
    )
  } catch {
    let cellDescription = text.isEmpty ? "an empty field" : "'\(text)'"
    throw .data(
      "\(location): \(cellDescription) is not a number. Write one decimal "
        + "weight per line, or 0 to mask a pair."
    )
  }
}

/// Returns `text` cut to 40 characters, so a long number stays readable.
private func shortened(_ text: String) -> String {
  text.count <= 40 ? text : text.prefix(37) + "..."
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
