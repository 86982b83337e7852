// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLoss

/// The results and timings of one run, as the command prints them.
struct RunReport {
  var metrics: DPOMetrics
  var pairCount: Int
  var beta: Double
  var strategy: DeltaStrategy
  /// Wall time to open, map, parse and check the input files.
  var loadSeconds: Double
  /// Wall time of the kernel call.
  var computeSeconds: Double
  /// Wall time to write the `--per-example` files, or `nil` without it.
  var writeSeconds: Double?

  /// Formats the report as one JSON object, one key per line.
  ///
  /// The keys are TRL's metric names (`loss`, `rewards/chosen`, …), then
  /// `n`, `beta`, `strategy`, `load_seconds`, `compute_seconds` and, with
  /// `--per-example`, `write_seconds`. Numbers use the shortest decimal
  /// text that parses back to the same `Double`. JSON has no NaN or
  /// infinity, so those are the strings `"NaN"`, `"Infinity"` and
  /// `"-Infinity"`, as Python's `json` module writes them without quotes.
  func json() -> String {
    var fields = metrics.namedValues.map { name, value in
      (name, jsonNumber(value))
    }
    fields.append(("n", String(pairCount)))
    fields.append(("beta", jsonNumber(beta)))
    fields.append(("strategy", "\"\(strategy.rawValue)\""))
    fields.append(("load_seconds", jsonNumber(loadSeconds)))
    fields.append(("compute_seconds", jsonNumber(computeSeconds)))
    if let writeSeconds {
      fields.append(("write_seconds", jsonNumber(writeSeconds)))
    }

    let lines = fields.map { name, value in "  \"\(name)\": \(value)" }
    return "{\n" + lines.joined(separator: ",\n") + "\n}\n"
  }

  /// Formats the report as aligned text: the metrics, N, beta, the
  /// strategy and the times in seconds.
  func text() -> String {
    var rows = metrics.namedValues.map { name, value in
      (name, value.description)
    }
    rows.append(("pairs (n)", String(pairCount)))
    rows.append(("beta", beta.description))
    rows.append(("strategy", strategy.rawValue))
    rows.append(("load time", formatSeconds(loadSeconds)))
    rows.append(("compute time", formatSeconds(computeSeconds)))
    if let writeSeconds {
      rows.append(("write time", formatSeconds(writeSeconds)))
    }

    let width = rows.map(\.0.count).max()! + 2
    return rows.map { name, value in
      name + String(repeating: " ", count: width - name.count) + value + "\n"
    }.joined()
  }
}

/// Formats `value` as a JSON number, or as a string for NaN and infinity.
func jsonNumber(_ value: Double) -> String {
  if value.isNaN {
    return "\"NaN\""
  }
  if value.isInfinite {
    return value > 0 ? "\"Infinity\"" : "\"-Infinity\""
  }
  // Swift prints finite values as JSON numbers, such as 0.1, 1e-05 and
  // -2.0.
  return value.description
}

/// Formats a duration in seconds with microsecond resolution.
private func formatSeconds(_ seconds: Double) -> String {
  let microseconds = Int((seconds * 1e6).rounded())
  let whole = microseconds / 1_000_000
  let fraction = String(microseconds % 1_000_000)
  let padding = String(repeating: "0", count: 6 - fraction.count)
  return "\(whole).\(padding)\(fraction) s"
}
