// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

// TODO: the dpo-loss command is being written; this is a placeholder.
public func runDPOLossCommand(_ arguments: [String]) -> Int32 { 2 }
