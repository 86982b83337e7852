// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import DPOLossCommand
import Glibc

exit(runDPOLossCommand(Array(CommandLine.arguments.dropFirst())))
