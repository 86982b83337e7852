// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLoss

/// Runs the `dpo-loss` command: parses `arguments`, loads the log-probs,
/// computes the DPO loss and metrics, writes the requested per-pair results
/// and prints a report.
///
/// `--help` prints the options and their defaults. On failure nothing is
/// printed to `standardOutput`, and no `--per-example` file is written when
/// an input is invalid.
///
/// - Parameters:
///   - arguments: The command-line arguments without the program name.
///   - standardOutput: Receives the help text or the report.
///   - standardError: Receives one error message, prefixed with
///     `dpo-loss: error:`.
/// - Returns: The exit status: ``ExitStatus/success`` (0),
///   ``ExitStatus/dataError`` (1) for an invalid input file or an output
///   that cannot be written, or ``ExitStatus/usageError`` (2) for invalid
///   arguments.
public func runDPOLossCommand(
  _ arguments: [String],
  standardOutput: inout some TextOutputStream,
  standardError: inout some TextOutputStream
) -> Int32 {
  do throws(CommandError) {
    switch try CommandRequest.parse(arguments) {
    case .showHelp:
      standardOutput.write(helpText)
    case .run(let options):
      let report = try run(options)
      standardOutput.write(options.printsJSON ? report.json() : report.text())
    }
    return ExitStatus.success
  } catch {
    standardError.write("dpo-loss: error: \(error.message)\n")
    if error.kind == .usage {
      standardError.write("Run 'dpo-loss --help' for the options.\n")
    }
    return error.exitStatus
  }
}

/// Loads the inputs, computes the loss and writes the per-pair results, and
/// returns the report with the time of each step.
private func run(_ options: CommandOptions) throws(CommandError)
  -> RunReport
{
  let destination = options.perExamplePath.map {
    PerExampleDestination(path: $0)
  }
  try destination?.checkWritable()
  let clock = ContinuousClock()

  // Load: open, map or parse, and check every input file.
  let loadStart = clock.now
  let inputs = try loadInputs(options)
  let loadEnd = clock.now

  // Compute: one kernel pass. With --per-example, this includes allocating
  // and filling the five result arrays.
  var outputs =
    destination == nil
    ? DPOOutputs()
    : DPOOutputs(losses: true, policyGradients: true, rewards: true)
  let statistics = try computeStatistics(inputs, options, &outputs)
  let computeEnd = clock.now

  var writeSeconds: Double?
  if let destination {
    try destination.write(outputs)
    writeSeconds = seconds(clock.now - computeEnd)
  }

  return RunReport(
    metrics: statistics.metrics,
    pairCount: inputs.count,
    beta: options.beta,
    strategy: options.strategy,
    loadSeconds: seconds(loadEnd - loadStart),
    computeSeconds: seconds(computeEnd - loadEnd),
    writeSeconds: writeSeconds
  )
}

/// Calls the kernel on spans over the loaded arrays, without copying them.
private func computeStatistics(
  _ inputs: LoadedInputs,
  _ options: CommandOptions,
  _ outputs: inout DPOOutputs
) throws(CommandError) -> DPOStatistics {
  do throws(DPOLossError) {
    return try inputs.policyChosen.withSpan { pc throws(DPOLossError) in
      try inputs.policyRejected.withSpan { pr throws(DPOLossError) in
        try inputs.referenceChosen.withSpan { rc throws(DPOLossError) in
          try inputs.referenceRejected.withSpan { rr throws(DPOLossError) in
            try withOptionalSpan(inputs.weights) {
              weights throws(DPOLossError) in
              try dpoLossAndGradients(
                policyChosen: pc,
                policyRejected: pr,
                referenceChosen: rc,
                referenceRejected: rr,
                weights: weights,
                beta: options.beta,
                strategy: options.strategy,
                outputs: &outputs
              )
            }
          }
        }
      }
    }
  } catch {
    // The kernel checks the weights' values, zero total and overflowing
    // sum; those messages name the weights file. loadInputs and the option
    // parser check lengths and beta first, so that their messages name the
    // file or option, and this reports anything else the kernel rejects.
    if let weights = inputs.weights,
      let weightError = kernelWeightError(error, weights: weights)
    {
      throw weightError
    }
    throw .data("the DPO loss kernel rejected the inputs: \(error)")
  }
}

private func withOptionalSpan<Result, Failure: Error>(
  _ array: InputArray?,
  _ body: (Span<Double>?) throws(Failure) -> Result
) throws(Failure) -> Result {
  guard let array else {
    return try body(nil)
  }
  return try array.withSpan { span throws(Failure) in try body(span) }
}

private func seconds(_ duration: Duration) -> Double {
  let (seconds, attoseconds) = duration.components
  return Double(seconds) + Double(attoseconds) / 1e18
}
