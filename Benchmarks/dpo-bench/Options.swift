// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// An invalid command line.
struct UsageError: Error, CustomStringConvertible {
  var description: String
}

/// The settings of one benchmark run.
struct BenchmarkOptions {
  /// Batch sizes in pairs.
  var sizes = [1 << 10, 1 << 16, 1 << 20, 1 << 24]
  var beta = 0.1
  /// Timed samples per implementation and size; the median is reported.
  var repetitions = 9
  /// Seed of the synthetic log-probs.
  var seed: UInt64 = 42
  var json = false
  var showHelp = false

  static let helpText = """
    Usage: dpo-bench [options]

    Times the DPO loss kernel (both delta strategies, loss alone and with
    the gradient, and with weights), the scalar reference and a read-only
    pass over the four inputs (the memory roofline) on seeded synthetic
    log-probs, in one run, and prints the median time per pair.

    Options:
      --sizes LIST        Comma-separated batch sizes in pairs; K and M
                          suffixes mean 2^10 and 2^20. Default: 1K,64K,1M,16M.
      --beta VALUE        Inverse temperature beta (finite, >= 0).
                          Default: 0.1.
      --repetitions N     Timed samples per implementation and size (>= 1);
                          the median is reported. Default: 9.
      --seed N            Seed of the synthetic log-probs. Default: 42.
      --json              Print one JSON array with an object per size and
                          implementation instead of tables.
      -h, --help          Print this help.

    Build in release mode; see README.md for host-CPU builds.
    """

  static func parse(_ arguments: [String]) throws -> BenchmarkOptions {
    var options = BenchmarkOptions()
    var remaining = arguments[...]
    var seen: Set<String> = []
    while let argument = remaining.popFirst() {
      if argument.hasPrefix("--"), !seen.insert(argument).inserted {
        throw UsageError(
          description: "\(argument) is given more than once; give it once"
        )
      }
      switch argument {
      case "-h", "--help":
        options.showHelp = true
      case "--json":
        options.json = true
      case "--sizes":
        let text = try value(after: argument, in: &remaining)
        options.sizes = try text.split(separator: ",").map {
          try parseSize(String($0))
        }
        guard !options.sizes.isEmpty else {
          throw UsageError(description: "--sizes needs at least one size")
        }
      case "--beta":
        let text = try value(after: argument, in: &remaining)
        guard let beta = Double(text), beta.isFinite, beta >= 0 else {
          throw UsageError(
            description: "invalid --beta '\(text)': expected a finite "
              + "number >= 0, such as 0.1"
          )
        }
        options.beta = beta
      case "--repetitions":
        let text = try value(after: argument, in: &remaining)
        guard let count = Int(text), count >= 1 else {
          throw UsageError(
            description: "invalid --repetitions '\(text)': expected a "
              + "whole number >= 1"
          )
        }
        options.repetitions = count
      case "--seed":
        let text = try value(after: argument, in: &remaining)
        guard let seed = UInt64(text) else {
          throw UsageError(
            description: "invalid --seed '\(text)': expected a whole "
              + "number from 0 to \(UInt64.max)"
          )
        }
        options.seed = seed
      default:
        throw UsageError(description: "unknown option '\(argument)'")
      }
    }
    return options
  }

  private static func value(
    after option: String,
    in remaining: inout ArraySlice<String>
  ) throws -> String {
    guard let text = remaining.popFirst() else {
      throw UsageError(description: "\(option) needs a value")
    }
    return text
  }

  /// Parses a batch size such as `4096`, `64K` or `16M`.
  static func parseSize(_ text: String) throws -> Int {
    var digits = Substring(text)
    var multiplier = 1
    switch digits.last {
    case "K", "k":
      multiplier = 1 << 10
      digits = digits.dropLast()
    case "M", "m":
      multiplier = 1 << 20
      digits = digits.dropLast()
    default:
      break
    }
    guard let count = Int(digits), count >= 1,
      count <= (1 << 30) / multiplier
    else {
      throw UsageError(
        description: "invalid size '\(text)': expected a whole number of "
          + "pairs from 1 to 1024M, such as 4096, 64K or 16M"
      )
    }
    return count * multiplier
  }
}
