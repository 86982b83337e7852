// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// A method of forming `delta = (pc - rc) - (pr - rr)` in the kernel.
///
/// Both strategies give the same delta bit for bit and share the softplus
/// and the reduction, so they return the same loss bit for bit.
public enum DeltaStrategy: String, Sendable, CaseIterable {
  /// OpenBLAS `cblas_dcopy` and `cblas_daxpy` write the two log-ratios and
  /// delta into L1-sized buffers, then the SIMD loop reads delta.
  case blas
  /// The SIMD loop loads the four inputs and forms delta in registers, in
  /// one pass with no BLAS call.
  case fused

  /// The faster strategy on the benchmark (see BENCHMARKS.md).
  public static let `default`: DeltaStrategy = .fused
}

/// Computes the mean DPO loss of a batch of preference pairs.
///
///     delta_i = (pc_i - rc_i) - (pr_i - rr_i)
///     loss    = -(1 / N) * sum_i log(sigmoid(beta * delta_i))
///
/// `-log(sigmoid(x))` is evaluated as `softplus(-x)` on eight SIMD lanes with
/// a vector `exp` and `log1p`, accurate to ``softplusMaxULPError`` ulp per
/// pair. Each 512-pair chunk is summed in SIMD lanes and the chunk sums are
/// combined with compensated summation, so the result agrees with ``referenceDPOLoss(policyChosen:policyRejected:referenceChosen:referenceRejected:beta:)-(Span<Double>,_,_,_,_)``
/// within 1e-14 relative. The tests check this up to 1M pairs, and
/// dpo-bench prints the difference at 16M.
///
/// Non-finite input: NaN in any array makes the loss NaN. A pair with
/// `delta = +infinity` contributes 0 and one with `delta = -infinity` makes
/// the loss `+infinity`. An infinite log-prob whose partner is the same
/// infinity (`-inf - -inf`) gives NaN, as IEEE 754 subtraction does. With
/// `beta = 0` every finite pair contributes `log 2`, and an infinite delta
/// gives NaN (`0 * inf`). The loss is summed before it is divided by N, so
/// per-pair losses near `Double.greatestFiniteMagnitude` overflow to
/// `+infinity`.
///
/// - Parameters:
///   - policyChosen: Policy log-probs of the chosen responses, one per pair.
///   - policyRejected: Policy log-probs of the rejected responses.
///   - referenceChosen: Reference-model log-probs of the chosen responses.
///   - referenceRejected: Reference-model log-probs of the rejected
///     responses.
///   - beta: The inverse temperature of the implicit reward; finite and
///     non-negative. Default 0.1.
///   - strategy: How delta is formed. Default ``DeltaStrategy/default``.
/// - Returns: The mean loss over the batch.
/// - Throws: ``DPOLossError/lengthMismatch(policyChosen:policyRejected:referenceChosen:referenceRejected:)``
///   if the four lengths differ, ``DPOLossError/emptyBatch`` if they are 0,
///   and ``DPOLossError/invalidBeta(_:)`` if `beta` is NaN, infinite or
///   negative.
/// - Complexity: O(N) time, one pass over the inputs. No heap allocation in
///   optimized builds: the chunk buffers are a 12 KiB thread-local scratch
///   area, which the C runtime may allocate on a thread's first call. BLAS
///   calls (`cblas_dcopy`, `cblas_daxpy`) run on the calling thread.
public func dpoLoss(
  policyChosen: Span<Double>,
  policyRejected: Span<Double>,
  referenceChosen: Span<Double>,
  referenceRejected: Span<Double>,
  beta: Double = 0.1,
  strategy: DeltaStrategy = .default
) throws(DPOLossError) -> Double {
  let count = try validateBatch(
    policyChosen.count,
    policyRejected.count,
    referenceChosen.count,
    referenceRejected.count,
    beta: beta
  )
  return withBatchPointers(
    policyChosen,
    policyRejected,
    referenceChosen,
    referenceRejected
  ) { batch in
    meanLossKernel(batch, count: count, beta: beta, strategy: strategy)
  }
}

/// Computes the mean DPO loss of a batch of preference pairs from arrays.
///
/// See ``dpoLoss(policyChosen:policyRejected:referenceChosen:referenceRejected:beta:strategy:)-(Span<Double>,_,_,_,_,_)``
/// for the formula, accuracy, errors and non-finite behaviour.
public func dpoLoss(
  policyChosen: [Double],
  policyRejected: [Double],
  referenceChosen: [Double],
  referenceRejected: [Double],
  beta: Double = 0.1,
  strategy: DeltaStrategy = .default
) throws(DPOLossError) -> Double {
  try dpoLoss(
    policyChosen: policyChosen.span,
    policyRejected: policyRejected.span,
    referenceChosen: referenceChosen.span,
    referenceRejected: referenceRejected.span,
    beta: beta,
    strategy: strategy
  )
}

/// Calls `body` with pointers to the four non-empty spans. The pointers are
/// valid only during the call.
func withBatchPointers<Result>(
  _ policyChosen: Span<Double>,
  _ policyRejected: Span<Double>,
  _ referenceChosen: Span<Double>,
  _ referenceRejected: Span<Double>,
  _ body: (BatchPointers) -> Result
) -> Result {
  policyChosen.withUnsafeBufferPointer { pc in
    policyRejected.withUnsafeBufferPointer { pr in
      referenceChosen.withUnsafeBufferPointer { rc in
        referenceRejected.withUnsafeBufferPointer { rr in
          body(
            BatchPointers(
              policyChosen: pc.baseAddress!,
              policyRejected: pr.baseAddress!,
              referenceChosen: rc.baseAddress!,
              referenceRejected: rr.baseAddress!
            )
          )
        }
      }
    }
  }
}
