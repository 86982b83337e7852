// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import CKernelSupport
import DPOLoss
import Foundation

// Measures the DPO loss kernel against the scalar reference and a read-only
// pass over the inputs, on seeded realistic log-probs, and prints the median
// time per pair of each implementation at each batch size.

let options: BenchmarkOptions
do {
  options = try BenchmarkOptions.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
  FileHandle.standardError.write(Data("dpo-bench: \(error)\n".utf8))
  FileHandle.standardError.write(Data("Run dpo-bench --help for usage.\n".utf8))
  exit(2)
}
if options.showHelp {
  print(BenchmarkOptions.helpText)
  exit(0)
}

var results: [BenchmarkResult] = []
if !options.json {
  printHeader(options)
}
for size in options.sizes {
  let batch = SyntheticBatch(count: size, seed: options.seed)
  let sizeResults = measureAll(batch, options: options)
  results += sizeResults
  if !options.json {
    printTable(sizeResults)
  }
}
if options.json {
  print(jsonArray(results))
}
