// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import CKernelSupport
import DPOLoss
import Foundation

/// SplitMix64: a small, fast, seeded generator, so runs are repeatable.
struct SplitMix64: RandomNumberGenerator {
  var state: UInt64

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// Seeded sequence log-probs shaped like real ones: reference values spread
/// over hundreds of nats, policy values within a few nats of them.
struct SyntheticBatch {
  var policyChosen: [Double]
  var policyRejected: [Double]
  var referenceChosen: [Double]
  var referenceRejected: [Double]

  var count: Int { policyChosen.count }

  init(count: Int, seed: UInt64) {
    var generator = SplitMix64(state: seed)
    referenceChosen = (0..<count).map { _ in
      -Double.random(in: 20...800, using: &generator)
    }
    referenceRejected = (0..<count).map { _ in
      -Double.random(in: 20...800, using: &generator)
    }
    policyChosen = referenceChosen.map {
      $0 + Double.random(in: -4...6, using: &generator)
    }
    policyRejected = referenceRejected.map {
      $0 + Double.random(in: -6...4, using: &generator)
    }
  }
}

/// One implementation timed at one batch size.
struct BenchmarkResult {
  var count: Int
  var implementation: String
  var nanosecondsPerPair: Double
  /// Input bytes read per second: 32 bytes per pair (four doubles).
  var gigabytesPerSecond: Double
  var speedupOverReference: Double
  /// Time relative to the read-only pass over the inputs.
  var timeOverRoofline: Double
  /// `|loss - reference loss| / |reference loss|`; 0 for the roofline.
  var relativeDifference: Double
  var loss: Double
  /// For "+gradient" rows, time over the same strategy's loss alone.
  var timeOverLossAlone: Double
}

/// A value the optimizer must assume is read, so timed calls are kept.
nonisolated(unsafe) var blackHole = 0.0

func nowNanoseconds() -> UInt64 {
  var time = timespec()
  clock_gettime(CLOCK_MONOTONIC, &time)
  return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// Returns the median time per pair, in nanoseconds, of `repetitions`
/// samples. Each sample repeats `body` until it covers at least 2^18 pairs,
/// so small batches are timed over many calls.
func medianNanosecondsPerPair(
  count: Int,
  repetitions: Int,
  _ body: () -> Double
) -> (nanoseconds: Double, result: Double) {
  let callsPerSample = max(1, (1 << 18) / count)
  var result = body()  // warm-up: page faults, caches, branch predictors
  var samples: [Double] = []
  for _ in 0..<repetitions {
    let start = nowNanoseconds()
    for _ in 0..<callsPerSample {
      result = body()
      blackHole += result
    }
    let elapsed = Double(nowNanoseconds() - start)
    samples.append(elapsed / Double(callsPerSample * count))
  }
  samples.sort()
  return (samples[samples.count / 2], result)
}

/// Sums the four inputs with eight SIMD lanes and four accumulators: the time
/// it takes just to read the inputs, which bounds any loss kernel.
func readOnlyPass(_ batch: SyntheticBatch) -> Double {
  func sum(_ values: [Double]) -> Double {
    values.withUnsafeBufferPointer { buffer in
      let base = UnsafeRawPointer(buffer.baseAddress!)
      var accumulators = (
        SIMD8<Double>(), SIMD8<Double>(), SIMD8<Double>(), SIMD8<Double>()
      )
      var offset = 0
      while offset + 32 <= buffer.count {
        let stride = MemoryLayout<Double>.stride
        accumulators.0 += base.loadUnaligned(
          fromByteOffset: offset * stride,
          as: SIMD8<Double>.self
        )
        accumulators.1 += base.loadUnaligned(
          fromByteOffset: (offset + 8) * stride,
          as: SIMD8<Double>.self
        )
        accumulators.2 += base.loadUnaligned(
          fromByteOffset: (offset + 16) * stride,
          as: SIMD8<Double>.self
        )
        accumulators.3 += base.loadUnaligned(
          fromByteOffset: (offset + 24) * stride,
          as: SIMD8<Double>.self
        )
        offset += 32
      }
      var total =
        (accumulators.0 + accumulators.1 + accumulators.2 + accumulators.3)
        .sum()
      while offset < buffer.count {
        total += buffer[offset]
        offset += 1
      }
      return total
    }
  }
  return sum(batch.policyChosen) + sum(batch.policyRejected)
    + sum(batch.referenceChosen) + sum(batch.referenceRejected)
}

/// Times every implementation on `batch` and returns one result each.
func measureAll(
  _ batch: SyntheticBatch,
  options: BenchmarkOptions
) -> [BenchmarkResult] {
  let beta = options.beta
  var timings:
    [(name: String, nanoseconds: Double, loss: Double, reference: Double?)] =
      []

  /// Times `body`. `referenceLoss` is the value its loss is compared with,
  /// when that is not the scalar reference's unweighted loss.
  func time(
    _ name: String,
    referenceLoss: Double? = nil,
    _ body: () throws(DPOLossError) -> Double
  ) {
    let (nanoseconds, loss) = medianNanosecondsPerPair(
      count: batch.count,
      repetitions: options.repetitions
    ) {
      do {
        return try body()
      } catch {
        fatalError("dpo-bench: \(name) failed: \(error)")
      }
    }
    timings.append((name, nanoseconds, loss, referenceLoss))
  }

  time("reference") { () throws(DPOLossError) in
    try referenceDPOLoss(
      policyChosen: batch.policyChosen,
      policyRejected: batch.policyRejected,
      referenceChosen: batch.referenceChosen,
      referenceRejected: batch.referenceRejected,
      beta: beta
    )
  }
  for strategy in DeltaStrategy.allCases {
    time(strategy.rawValue) { () throws(DPOLossError) in
      try dpoLoss(
        policyChosen: batch.policyChosen,
        policyRejected: batch.policyRejected,
        referenceChosen: batch.referenceChosen,
        referenceRejected: batch.referenceRejected,
        beta: beta,
        strategy: strategy
      )
    }
  }
  var outputs = DPOOutputs(policyGradients: true, capacity: batch.count)
  for strategy in DeltaStrategy.allCases {
    time(strategy.rawValue + "+gradient") { () throws(DPOLossError) in
      try dpoLossAndGradients(
        policyChosen: batch.policyChosen,
        policyRejected: batch.policyRejected,
        referenceChosen: batch.referenceChosen,
        referenceRejected: batch.referenceRejected,
        beta: beta,
        strategy: strategy,
        outputs: &outputs
      ).loss
    }
  }
  // Weights 0, 1, 2 in turn: a third of the pairs masked. This loss
  // differs from the others, so its own reference value is computed once.
  let weights = (0..<batch.count).map { Double($0 % 3) }
  var referenceOutputs = DPOOutputs()
  let weightedReference: Double
  do {
    weightedReference = try referenceDPOLossAndGradients(
      policyChosen: batch.policyChosen,
      policyRejected: batch.policyRejected,
      referenceChosen: batch.referenceChosen,
      referenceRejected: batch.referenceRejected,
      weights: weights,
      beta: beta,
      outputs: &referenceOutputs
    ).loss
  } catch {
    fatalError("dpo-bench: weighted reference failed: \(error)")
  }
  time("fused+weighted", referenceLoss: weightedReference) {
    () throws(DPOLossError) in
    try dpoLossAndGradients(
      policyChosen: batch.policyChosen,
      policyRejected: batch.policyRejected,
      referenceChosen: batch.referenceChosen,
      referenceRejected: batch.referenceRejected,
      weights: weights,
      beta: beta,
      strategy: .fused,
      outputs: &outputs
    ).loss
  }
  time("roofline") { readOnlyPass(batch) }

  let reference = timings[0]
  let roofline = timings.last!
  return timings.map { timing in
    let isRoofline = timing.name == "roofline"
    // "fused+gradient" against "fused": the cost of the gradient.
    let lossAlone = timing.name.split(separator: "+").first.flatMap { name in
      timings.first { $0.name == name }
    }
    let expected = timing.reference ?? reference.loss
    let difference =
      isRoofline ? 0 : abs(timing.loss - expected) / abs(expected)
    return BenchmarkResult(
      count: batch.count,
      implementation: timing.name,
      nanosecondsPerPair: timing.nanoseconds,
      gigabytesPerSecond: 32 / timing.nanoseconds,
      speedupOverReference: reference.nanoseconds / timing.nanoseconds,
      timeOverRoofline: timing.nanoseconds / roofline.nanoseconds,
      relativeDifference: difference,
      loss: isRoofline ? .nan : timing.loss,
      timeOverLossAlone: timing.name.contains("+")
        ? timing.nanoseconds / lossAlone!.nanoseconds : .nan
    )
  }
}

/// Target features of this build, from the C compiler's macros.
let buildHasAVX512F = DPO_TARGET_HAS_AVX512F != 0
let buildHasAVX2 = DPO_TARGET_HAS_AVX2 != 0
let buildHasFMA = DPO_TARGET_HAS_FMA != 0

/// Returns the name of the instruction set the build targets.
func targetInstructionSet() -> String {
  let fma = buildHasFMA ? " + FMA" : ""
  if buildHasAVX512F {
    return "AVX-512F" + fma
  }
  if buildHasAVX2 {
    return "AVX2" + fma
  }
  return "SSE2 (portable x86-64 baseline)" + fma
}

/// Returns the CPU model from /proc/cpuinfo, or "unknown CPU".
func cpuModel() -> String {
  guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
  else { return "unknown CPU" }
  for line in text.split(separator: "\n") where line.hasPrefix("model name") {
    if let colon = line.firstIndex(of: ":") {
      return line[line.index(after: colon)...]
        .trimmingCharacters(in: .whitespaces)
    }
  }
  return "unknown CPU"
}

func printHeader(_ options: BenchmarkOptions) {
  print("dpo-bench: mean DPO loss, beta \(options.beta), one thread")
  print(
    "machine: \(cpuModel()), \(ProcessInfo.processInfo.activeProcessorCount) "
      + "cores; build targets \(targetInstructionSet())"
  )
  print(
    "median of \(options.repetitions) samples; default strategy: "
      + "\(DeltaStrategy.default.rawValue)"
  )
}

func printTable(_ results: [BenchmarkResult]) {
  guard let first = results.first else { return }
  print("")
  print("N = \(first.count)")
  let header = [
    "implementation", "ns/pair", "GB/s", "x reference", "x roofline",
    "rel. diff", "loss", "x loss alone",
  ]
  print(formatRow(header))
  for result in results {
    print(
      formatRow([
        result.implementation,
        String(format: "%.3f", result.nanosecondsPerPair),
        String(format: "%.2f", result.gigabytesPerSecond),
        String(format: "%.2f", result.speedupOverReference),
        String(format: "%.2f", result.timeOverRoofline),
        String(format: "%.1e", result.relativeDifference),
        result.loss.isNaN ? "-" : String(format: "%.15g", result.loss),
        result.timeOverLossAlone.isNaN
          ? "" : String(format: "%.2f", result.timeOverLossAlone),
      ])
    )
  }
}

func formatRow(_ cells: [String]) -> String {
  let widths = [16, 9, 7, 12, 11, 10, 19, 12]
  return zip(cells, widths).map { cell, width in
    cell.count >= width
      ? cell + " " : cell + String(repeating: " ", count: width - cell.count)
  }.joined()
}

/// Formats a double for JSON. JSON has no NaN or infinity, so those become
/// the strings "NaN", "Infinity" and "-Infinity", as in dpo-loss.
func jsonNumber(_ value: Double) -> String {
  if value.isNaN {
    return "\"NaN\""
  }
  if value.isInfinite {
    return value > 0 ? "\"Infinity\"" : "\"-Infinity\""
  }
  return "\(value)"
}

/// Formats the results as one JSON array. `loss` is left out for the
/// roofline, and `time_vs_loss_alone` is given only for `+gradient` rows.
func jsonArray(_ results: [BenchmarkResult]) -> String {
  let objects = results.map { result in
    var fields = [
      "\"n\": \(result.count)",
      "\"implementation\": \"\(result.implementation)\"",
      "\"ns_per_element\": \(jsonNumber(result.nanosecondsPerPair))",
      "\"gb_per_s\": \(jsonNumber(result.gigabytesPerSecond))",
      "\"speedup_vs_reference\": \(jsonNumber(result.speedupOverReference))",
      "\"time_vs_roofline\": \(jsonNumber(result.timeOverRoofline))",
      "\"relative_difference_vs_reference\": "
        + jsonNumber(result.relativeDifference),
    ]
    if result.implementation != "roofline" {
      fields.append("\"loss\": \(jsonNumber(result.loss))")
    }
    if !result.timeOverLossAlone.isNaN {
      fields.append(
        "\"time_vs_loss_alone\": \(jsonNumber(result.timeOverLossAlone))"
      )
    }
    fields.append("\"instruction_set\": \"\(targetInstructionSet())\"")
    return "  {" + fields.joined(separator: ", ") + "}"
  }
  return "[\n" + objects.joined(separator: ",\n") + "\n]"
}
