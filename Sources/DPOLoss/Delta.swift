// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import COpenBLAS

/// Copies `count` doubles from `source` to `destination` (`cblas_dcopy`).
@inline(always)
func blasCopy(
  _ count: Int,
  from source: UnsafePointer<Double>,
  to destination: UnsafeMutablePointer<Double>
) {
  cblas_dcopy(blasint(count), source, 1, destination, 1)
}

/// Computes `y += alpha * x` on `count` doubles (`cblas_daxpy`).
///
/// OpenBLAS 0.3.21 runs `daxpy` on one thread for `count <= 10000`
/// (`interface/axpy.c`), and ``chunkLength`` is far below that, so these
/// calls never wake the OpenBLAS thread pool nor compete with the caller's
/// threads. The global thread setting is left alone.
@inline(always)
func blasAXPY(
  _ count: Int,
  alpha: Double,
  x: UnsafePointer<Double>,
  y: UnsafeMutablePointer<Double>
) {
  cblas_daxpy(blasint(count), alpha, x, 1, y, 1)
}

/// Computes `delta = (pc - rc) - (pr - rr)` for one chunk with BLAS.
///
/// `chosen` receives `pc - rc` and then delta; `rejected` receives `pr - rr`.
/// Multiplying by -1 is exact, so each `daxpy` rounds once, as the scalar
/// subtraction does, and the result equals ``dpoDelta(policyChosen:policyRejected:referenceChosen:referenceRejected:)``
/// bit for bit, except for the sign and payload of a NaN, which IEEE 754
/// leaves open.
@inline(always)
func blasDelta(
  _ count: Int,
  policyChosen: UnsafePointer<Double>,
  policyRejected: UnsafePointer<Double>,
  referenceChosen: UnsafePointer<Double>,
  referenceRejected: UnsafePointer<Double>,
  chosen: UnsafeMutablePointer<Double>,
  rejected: UnsafeMutablePointer<Double>
) {
  assert(count <= chunkLength)
  blasCopy(count, from: policyChosen, to: chosen)
  blasAXPY(count, alpha: -1, x: referenceChosen, y: chosen)
  blasCopy(count, from: policyRejected, to: rejected)
  blasAXPY(count, alpha: -1, x: referenceRejected, y: rejected)
  blasAXPY(count, alpha: -1, x: rejected, y: chosen)
}
