// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossCommand
import DPOLossFiles
import DPOLossTestSupport
import Foundation

/// The exit status, standard output and standard error of one run.
struct CommandResult {
  var status: Int32
  var output: String
  var error: String
}

/// Runs the command in this process with captured output.
func runInProcess(_ arguments: [String]) -> CommandResult {
  var output = ""
  var error = ""
  let status = runDPOLossCommand(
    arguments,
    standardOutput: &output,
    standardError: &error
  )
  return CommandResult(status: status, output: output, error: error)
}

extension TemporaryDirectory {
  /// Writes `values` as a float64 `.npy` file and returns its path.
  @discardableResult
  func writeNumPy(_ values: [Double], to name: String) throws -> String {
    let path = file(name)
    try NumPyArray.write(values, to: path)
    return path
  }
}

/// A small batch of four log-prob arrays with hand-checkable results.
struct SampleBatch {
  var policyChosen: [Double]
  var policyRejected: [Double]
  var referenceChosen: [Double]
  var referenceRejected: [Double]

  static let standard = SampleBatch(
    policyChosen: [-10.5, -22.25, -7.0],
    policyRejected: [-12.0, -20.0, -9.5],
    referenceChosen: [-11.0, -21.0, -7.0],
    referenceRejected: [-11.5, -21.5, -9.0]
  )

  var count: Int { policyChosen.count }

  /// Writes the arrays as float64 `.npy` files and returns the four input
  /// options with their paths.
  func writeNumPy(in directory: TemporaryDirectory) throws -> [String] {
    [
      "--policy-chosen", try directory.writeNumPy(policyChosen, to: "pc.npy"),
      "--policy-rejected",
      try directory.writeNumPy(policyRejected, to: "pr.npy"),
      "--reference-chosen",
      try directory.writeNumPy(referenceChosen, to: "rc.npy"),
      "--reference-rejected",
      try directory.writeNumPy(referenceRejected, to: "rr.npy"),
    ]
  }

  /// Writes the arrays as one CSV table and returns its path.
  func writeTable(in directory: TemporaryDirectory) throws -> String {
    var text =
      "policy_chosen,policy_rejected,reference_chosen,"
      + "reference_rejected\n"
    for i in 0..<count {
      let row = [
        policyChosen[i], policyRejected[i], referenceChosen[i],
        referenceRejected[i],
      ]
      text += row.map(\.description).joined(separator: ",") + "\n"
    }
    return try directory.write(text, to: "batch.csv")
  }

  func delta(_ i: Int) -> Double {
    (policyChosen[i] - referenceChosen[i])
      - (policyRejected[i] - referenceRejected[i])
  }

  /// Returns the per-pair loss `softplus(-beta * delta)`, in the form that
  /// is accurate for either sign.
  func loss(_ i: Int, beta: Double) -> Double {
    let x = -beta * delta(i)
    return max(x, 0) + Foundation.log1p(Foundation.exp(-abs(x)))
  }

  /// Returns `d(mean loss) / d pc_i` without weights.
  func chosenGradient(_ i: Int, beta: Double) -> Double {
    -beta / (1 + Foundation.exp(beta * delta(i))) / Double(count)
  }
}

/// Builds the bytes of a `.npy` file with the given header fields. The
/// header is padded so that the data starts at a multiple of 64 bytes.
func numPyBytes(
  descr: String,
  shape: String,
  fortranOrder: Bool = false,
  data: [UInt8]
) -> [UInt8] {
  let order = fortranOrder ? "True" : "False"
  var header =
    "{'descr': '\(descr)', 'fortran_order': \(order), 'shape': \(shape), }"
  let unpadded = 10 + header.utf8.count + 1
  header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
  let length = header.utf8.count
  let prefix: [UInt8] =
    [0x93] + Array("NUMPY".utf8)
    + [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)]
  return prefix + Array(header.utf8) + data
}

/// Returns the little-endian bytes of `values` as float32.
func float32Bytes(_ values: [Float]) -> [UInt8] {
  values.flatMap { value in
    withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) }
  }
}

/// Returns the values of a `.npy` file, read with `NumPyArray`.
func readNumPy(_ path: String) throws -> [Double] {
  let array = try NumPyArray(contentsOf: path)
  return array.withSpan { span in
    (0..<span.count).map { span[$0] }
  }
}

/// Parses the command's `--json` output. The strings `"NaN"`,
/// `"Infinity"` and `"-Infinity"` become the `Double` values they name.
func parseReport(_ text: String) throws -> [String: Any] {
  let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
  guard let report = object as? [String: Any] else {
    throw ReportError.notAnObject(text)
  }
  return report
}

/// Returns a numeric JSON value, decoding the strings that stand for NaN
/// and infinities, or `nil` for anything else.
func jsonDouble(_ value: Any?) -> Double? {
  switch value {
  case let string as String:
    switch string {
    case "NaN": return .nan
    case "Infinity": return .infinity
    case "-Infinity": return -.infinity
    default: return nil
    }
  case let number as NSNumber:
    return number.doubleValue
  default:
    return nil
  }
}

enum ReportError: Error {
  case notAnObject(String)
}

/// The JSON keys of the loss and metrics, in TRL's logging order.
let metricKeys = [
  "loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
  "rewards/margins", "logps/chosen", "logps/rejected",
]

/// The names of the per-example results: the `.npy` file stems and the
/// CSV column names.
let perExampleNames = [
  "losses", "chosen_rewards", "rejected_rewards", "grad_policy_chosen",
  "grad_policy_rejected",
]
