// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLoss
import DPOLossFiles

/// The files that contain the four log-prob arrays.
enum LogProbSource: Equatable {
  /// Four 1-D `.npy` files, one per array.
  case numPy(
    policyChosen: String,
    policyRejected: String,
    referenceChosen: String,
    referenceRejected: String
  )
  /// One CSV or TSV file whose header names the four columns.
  case table(String)
}

/// The settings of one `dpo-loss` run.
struct CommandOptions: Equatable {
  var logProbSource: LogProbSource
  var beta = CommandOptions.defaultBeta
  var weightsPath: String?
  var strategy = DeltaStrategy.default
  var printsJSON = false
  var perExamplePath: String?

  /// The `--beta` default, the same as the kernel functions' default.
  static let defaultBeta = 0.1
}

/// The action that the arguments request.
enum CommandRequest: Equatable {
  case showHelp
  case run(CommandOptions)
}

/// The options that take a value, by name without the leading `--`.
private let valueOptionNames: Set<String> = [
  "policy-chosen", "policy-rejected", "reference-chosen",
  "reference-rejected", "table", "beta", "weights", "strategy",
  "per-example",
]

/// The options that take no value.
private let flagNames: Set<String> = ["json"]

/// The four `.npy` input options, in the order `--help` lists them.
let numPyOptionNames = [
  "policy-chosen", "policy-rejected", "reference-chosen",
  "reference-rejected",
]

extension CommandRequest {
  /// Parses the arguments of `dpo-loss`, without the program name.
  ///
  /// An option's value follows it as the next argument or after `=`, as in
  /// `--beta 0.5` or `--beta=0.5`. A next argument that starts with `--` is
  /// taken as a missing value, so a path that starts with `--` must be
  /// passed with `=`. `--help` or `-h` anywhere requests the help text, even
  /// next to invalid arguments.
  ///
  /// - Throws: A `CommandError` of kind `.usage` for an unknown option, a
  ///   missing, repeated or invalid value, a positional argument, missing
  ///   inputs, or `--table` combined with the `.npy` options.
  static func parse(_ arguments: [String]) throws(CommandError)
    -> CommandRequest
  {
    if arguments.contains("--help") || arguments.contains("-h") {
      return .showHelp
    }
    let values = try collectOptionValues(arguments)

    // Invalid values are reported before missing inputs, because a
    // message about a value the user typed is the more specific one.
    let beta =
      try values["beta"].map(parseBeta) ?? CommandOptions.defaultBeta
    let strategy = try values["strategy"].map(parseStrategy) ?? .default
    var options = CommandOptions(
      logProbSource: try logProbSource(from: values),
      beta: beta,
      strategy: strategy
    )
    options.weightsPath = values["weights"]
    options.perExamplePath = values["per-example"]
    options.printsJSON = values["json"] != nil
    return .run(options)
  }

  /// Returns each option given, by name, with its value (an empty string
  /// for a flag).
  private static func collectOptionValues(
    _ arguments: [String]
  ) throws(CommandError) -> [String: String] {
    var values: [String: String] = [:]
    var index = 0
    while index < arguments.count {
      let argument = arguments[index]
      index += 1
      guard argument.hasPrefix("--"), argument.count > 2 else {
        if argument.hasPrefix("-") && argument != "-" {
          throw .usage("unknown option '\(argument)'.")
        }
        throw .usage(
          "unexpected argument '\(argument)'. Every input is passed with "
            + "an option, such as --table FILE."
        )
      }

      var name = String(argument.dropFirst(2))
      var inlineValue: String?
      if let equals = name.firstIndex(of: "=") {
        inlineValue = String(name[name.index(after: equals)...])
        name = String(name[..<equals])
      }
      guard values[name] == nil else {
        throw .usage("--\(name) is given more than once. Pass it once.")
      }

      if flagNames.contains(name) {
        guard inlineValue == nil else {
          throw .usage("--\(name) takes no value, but got '\(argument)'.")
        }
        values[name] = ""
        continue
      }
      guard valueOptionNames.contains(name) else {
        throw .usage("unknown option '--\(name)'.")
      }

      var value = inlineValue
      if value == nil, index < arguments.count,
        !arguments[index].hasPrefix("--")
      {
        value = arguments[index]
        index += 1
      }
      guard let value, !value.isEmpty else {
        throw .usage("missing value for --\(name).")
      }
      values[name] = value
    }
    return values
  }

  /// Returns the input files, or throws if they are missing or conflict.
  private static func logProbSource(
    from values: [String: String]
  ) throws(CommandError) -> LogProbSource {
    let presentNumPyOptions = numPyOptionNames.filter { values[$0] != nil }
    let allNumPyOptions = numPyOptionNames.map { "--\($0)" }
      .joined(separator: ", ")

    if let table = values["table"] {
      guard presentNumPyOptions.isEmpty else {
        let conflicting = presentNumPyOptions.map { "--\($0)" }
          .joined(separator: ", ")
        throw .usage(
          "--table cannot be combined with \(conflicting). Pass either "
            + "--table FILE or the four .npy files."
        )
      }
      return .table(table)
    }

    guard !presentNumPyOptions.isEmpty else {
      throw .usage(
        "missing inputs. Pass --table FILE, or all of \(allNumPyOptions) "
          + "with one .npy file each."
      )
    }
    let missing = numPyOptionNames.filter { values[$0] == nil }
    guard missing.isEmpty else {
      let list = missing.map { "--\($0)" }.joined(separator: ", ")
      throw .usage(
        "missing \(list). Pass all of \(allNumPyOptions), or --table FILE "
          + "instead."
      )
    }
    return .numPy(
      policyChosen: values["policy-chosen"]!,
      policyRejected: values["policy-rejected"]!,
      referenceChosen: values["reference-chosen"]!,
      referenceRejected: values["reference-rejected"]!
    )
  }

  private static func parseStrategy(_ text: String) throws(CommandError)
    -> DeltaStrategy
  {
    guard let strategy = DeltaStrategy(rawValue: text) else {
      let names = DeltaStrategy.allCases.map(\.rawValue)
      throw .usage(
        "unknown strategy '\(text)' for --strategy. Use one of: "
          + names.joined(separator: ", ") + "."
      )
    }
    return strategy
  }

  /// Parses `--beta` as a decimal number, with the same rules as table
  /// cells and weights, and requires it to be finite and non-negative.
  private static func parseBeta(_ text: String) throws(CommandError)
    -> Double
  {
    let beta: Double
    do throws(NumberTextError) {
      beta = try parseDecimalNumber(text)
    } catch .hexadecimal {
      throw .usage(
        "invalid value '\(text)' for --beta: hexadecimal floats are not "
          + "accepted. Write beta in decimal notation"
          + decimalEquivalent(of: text) + "."
      )
    } catch .outOfRange {
      throw .usage(
        "invalid value '\(text)' for --beta: the number is outside the "
          + "range of a double. Pass a finite, non-negative number such as "
          + "0.1."
      )
    } catch {
      throw .usage(
        "invalid value '\(text)' for --beta: not a number. Pass a finite, "
          + "non-negative number such as 0.1."
      )
    }
    guard beta.isFinite, beta >= 0 else {
      throw .usage(
        "invalid value '\(text)' for --beta: beta must be finite and "
          + "non-negative. DPO commonly uses 0.01 to 0.5 (default 0.1)."
      )
    }
    return beta
  }
}

/// Returns " (0x1p-3 is 0.125)" for hexadecimal float text, or an empty
/// string if Swift's `Double(_:)` cannot read it as a finite value.
func decimalEquivalent(of text: String) -> String {
  guard let value = Double(text), value.isFinite else {
    return ""
  }
  return " (\(text) is \(value))"
}
