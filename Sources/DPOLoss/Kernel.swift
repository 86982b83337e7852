// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// Pairs per chunk. The BLAS strategy's two delta buffers take 8 KiB at this
/// length, so they stay in L1 next to the input streams, and every BLAS count
/// fits OpenBLAS's 32-bit `blasint`. Partial sums of chunks are combined with
/// compensated summation.
let chunkLength = 512

/// Lane numbers 0...7, for masking the lanes past the end of a batch.
@usableFromInline
let laneIndices = SIMD8<Int64>(0, 1, 2, 3, 4, 5, 6, 7)

@inline(always)
func load(_ pointer: UnsafePointer<Double>) -> Double8 {
  UnsafeRawPointer(pointer).loadUnaligned(as: Double8.self)
}

/// Loads the first `count` (< 8) values and zeros in the other lanes, with
/// no read past `pointer + count`.
@inline(always)
func loadPartial(_ pointer: UnsafePointer<Double>, count: Int) -> Double8 {
  assert(count >= 0 && count < 8)
  var vector = Double8(repeating: 0)
  for lane in 0..<count {
    vector[lane] = pointer[lane]
  }
  return vector
}

/// Four pointers to one batch, advanced together.
struct BatchPointers {
  var policyChosen: UnsafePointer<Double>
  var policyRejected: UnsafePointer<Double>
  var referenceChosen: UnsafePointer<Double>
  var referenceRejected: UnsafePointer<Double>

  @inline(always)
  func advanced(by offset: Int) -> BatchPointers {
    BatchPointers(
      policyChosen: policyChosen + offset,
      policyRejected: policyRejected + offset,
      referenceChosen: referenceChosen + offset,
      referenceRejected: referenceRejected + offset
    )
  }

  /// Computes `(pc - rc) - (pr - rr)` for the eight pairs at `offset`.
  @inline(always)
  func delta(at offset: Int) -> Double8 {
    let chosen = load(policyChosen + offset) - load(referenceChosen + offset)
    let rejected =
      load(policyRejected + offset) - load(referenceRejected + offset)
    return chosen - rejected
  }

  /// Computes delta for the `count` (< 8) pairs at `offset`, 0 elsewhere.
  @inline(always)
  func partialDelta(at offset: Int, count: Int) -> Double8 {
    let chosen =
      loadPartial(policyChosen + offset, count: count)
      - loadPartial(referenceChosen + offset, count: count)
    let rejected =
      loadPartial(policyRejected + offset, count: count)
      - loadPartial(referenceRejected + offset, count: count)
    return chosen - rejected
  }
}

/// Sums `softplus(-beta * delta)` over `count` pairs whose delta comes from
/// `delta(offset)` (eight full lanes) and `partialDelta(offset, lanes)`.
///
/// Two accumulators let the two softplus chains of an iteration overlap.
@inline(always)
func sumNegativeLogSigmoid(
  count: Int,
  beta: Double,
  delta: (Int) -> Double8,
  partialDelta: (Int, Int) -> Double8
) -> Double {
  let negativeBeta = Double8(repeating: -beta)
  var sum0 = Double8(repeating: 0)
  var sum1 = Double8(repeating: 0)
  var offset = 0

  while offset + 16 <= count {
    sum0 += softplus(negativeBeta * delta(offset))
    sum1 += softplus(negativeBeta * delta(offset + 8))
    offset += 16
  }
  if offset + 8 <= count {
    sum0 += softplus(negativeBeta * delta(offset))
    offset += 8
  }

  let remaining = count - offset
  if remaining > 0 {
    let losses = softplus(negativeBeta * partialDelta(offset, remaining))
    let isPadding = laneIndices .>= Int64(remaining)
    sum1 += losses.replacing(with: 0, where: isPadding)
  }
  return (sum0 + sum1).sum()
}

/// Computes the sum of per-pair losses over one chunk, forming delta inside
/// the SIMD loop.
func fusedChunkLossSum(
  _ batch: BatchPointers,
  count: Int,
  beta: Double
) -> Double {
  sumNegativeLogSigmoid(
    count: count,
    beta: beta,
    delta: { batch.delta(at: $0) },
    partialDelta: { batch.partialDelta(at: $0, count: $1) }
  )
}

/// Computes the sum of per-pair losses over one chunk, forming delta with
/// BLAS in `chosen` and `rejected` (each at least `count` long).
func blasChunkLossSum(
  _ batch: BatchPointers,
  count: Int,
  beta: Double,
  chosen: UnsafeMutablePointer<Double>,
  rejected: UnsafeMutablePointer<Double>
) -> Double {
  blasDelta(
    count,
    policyChosen: batch.policyChosen,
    policyRejected: batch.policyRejected,
    referenceChosen: batch.referenceChosen,
    referenceRejected: batch.referenceRejected,
    chosen: chosen,
    rejected: rejected
  )
  let deltas = UnsafePointer(chosen)
  return sumNegativeLogSigmoid(
    count: count,
    beta: beta,
    delta: { load(deltas + $0) },
    partialDelta: { loadPartial(deltas + $0, count: $1) }
  )
}

/// Computes the mean loss of `count > 0` pairs, chunk by chunk.
func meanLossKernel(
  _ batch: BatchPointers,
  count: Int,
  beta: Double,
  strategy: DeltaStrategy
) -> Double {
  var total = CompensatedSum()
  switch strategy {
  case .fused:
    var start = 0
    while start < count {
      let length = min(chunkLength, count - start)
      let chunk = batch.advanced(by: start)
      total.add(fusedChunkLossSum(chunk, count: length, beta: beta))
      start += length
    }
  case .blas:
    withUnsafeTemporaryAllocation(
      of: Double.self,
      capacity: 2 * chunkLength
    ) { buffer in
      let chosen = buffer.baseAddress!
      let rejected = chosen + chunkLength
      var start = 0
      while start < count {
        let length = min(chunkLength, count - start)
        let chunk = batch.advanced(by: start)
        total.add(
          blasChunkLossSum(
            chunk,
            count: length,
            beta: beta,
            chosen: chosen,
            rejected: rejected
          )
        )
        start += length
      }
    }
  }
  return total.value / Double(count)
}
