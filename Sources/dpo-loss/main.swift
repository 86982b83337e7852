// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossCommand
import Glibc

var standardOutput = StandardStream.output
var standardError = StandardStream.error
let status = runDPOLossCommand(
  Array(CommandLine.arguments.dropFirst()),
  standardOutput: &standardOutput,
  standardError: &standardError
)
exit(status)
