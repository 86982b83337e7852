// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import CKernelSupport

/// Pairs per chunk: 512, a third of the per-thread scratch buffer. The
/// chunk buffers (4 KiB each, 12 KiB at most) stay in L1 next to the input
/// streams, and every BLAS count fits OpenBLAS's 32-bit `blasint`. Partial
/// sums of chunks are combined with compensated summation.
let chunkLength = Int(DPO_THREAD_SCRATCH_COUNT) / 3

/// Returns the lane numbers 0...7, for masking the lanes past the end of a
/// batch. A function, not a global, so that no lazy initializer runs.
@inline(always)
func laneIndexVector() -> SIMD8<Int64> {
  SIMD8<Int64>(0, 1, 2, 3, 4, 5, 6, 7)
}

@inline(always)
func load(_ pointer: UnsafePointer<Double>) -> Double8 {
  UnsafeRawPointer(pointer).loadUnaligned(as: Double8.self)
}

/// Loads the first `count` (< 8) values and zeros in the other lanes, with
/// no read past `pointer + count`.
@inline(always)
func loadPartial(_ pointer: UnsafePointer<Double>, count: Int) -> Double8 {
  assert(count >= 0)
  assert(count < 8)
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

  /// Starts loading the cache lines of the eight pairs at `offset`. Never
  /// faults, so `offset` may lie past the end of the batch.
  @inline(always)
  func prefetch(at offset: Int) {
    dpo_prefetch(policyChosen + offset)
    dpo_prefetch(policyRejected + offset)
    dpo_prefetch(referenceChosen + offset)
    dpo_prefetch(referenceRejected + offset)
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

/// A source of the deltas of one chunk for the loss-only kernel.
protocol DeltaSource {
  /// Returns delta for the eight pairs at `offset`.
  func delta(at offset: Int) -> Double8
  /// Returns delta for the `count` (< 8) pairs at `offset`, 0 elsewhere.
  func partialDelta(at offset: Int, count: Int) -> Double8
  /// Starts loading the inputs of the eight pairs at `offset` of the batch.
  func prefetch(at offset: Int)
}

extension BatchPointers: DeltaSource {}

/// Deltas that BLAS wrote into a chunk buffer, with the batch they came from
/// for prefetching.
struct BufferedDeltas: DeltaSource {
  var deltas: UnsafePointer<Double>
  var batch: BatchPointers

  @inline(always)
  func delta(at offset: Int) -> Double8 {
    load(deltas + offset)
  }

  @inline(always)
  func partialDelta(at offset: Int, count: Int) -> Double8 {
    loadPartial(deltas + offset, count: count)
  }

  @inline(always)
  func prefetch(at offset: Int) {
    batch.prefetch(at: offset)
  }
}

/// Sums `softplus(-beta * delta)` over `count <= chunkLength` pairs.
///
/// Two passes through `scratch` (`2 * chunkLength` doubles, in L1):
/// the first stores `z = -beta * delta` and `exp(-|z|)`, the second adds
/// `max(z, 0) + log1p(exp(-|z|))`. Each loop keeps fewer constants live than
/// one fused loop, so neither spills registers. Generic rather than taking
/// closures, because the closures were not inlined into the loop.
@inline(never)
func sumNegativeLogSigmoid<Source: DeltaSource>(
  _ source: Source,
  count: Int,
  beta: Double,
  scratch: UnsafeMutablePointer<Double>
) -> Double {
  assert(count <= chunkLength)
  let negativeBeta = Double8(repeating: -beta)
  let zBuffer = UnsafeMutableRawPointer(scratch)
  let expBuffer = UnsafeMutableRawPointer(scratch + chunkLength)
  let stride = MemoryLayout<Double>.stride

  // Pass 1: z and exp(-|z|), eight lanes at a time, the tail padded with 0.
  @inline(always)
  func storeParts(_ delta: Double8, at offset: Int) {
    let z = negativeBeta * delta
    let zero = Double8(repeating: 0)
    let magnitude = z.replacing(with: -z, where: z .< zero)
    zBuffer.storeBytes(of: z, toByteOffset: offset * stride, as: Double8.self)
    expBuffer.storeBytes(
      of: exponentialNonPositive(-magnitude),
      toByteOffset: offset * stride,
      as: Double8.self
    )
  }
  let fullVectorsEnd = count & ~7
  var offset = 0
  while offset < fullVectorsEnd {
    storeParts(source.delta(at: offset), at: offset)
    offset += 8
  }
  if fullVectorsEnd < count {
    let delta = source.partialDelta(
      at: fullVectorsEnd,
      count: count - fullVectorsEnd
    )
    storeParts(delta, at: fullVectorsEnd)
  }

  // Pass 2: max(z, 0) + log1p(e), summed; padding lanes masked out.
  var sum0 = Double8(repeating: 0)
  var sum1 = Double8(repeating: 0)
  offset = 0
  let fullPairsEnd = count & ~15
  while offset < fullPairsEnd {
    // Pass 2 reads no input, so fetch the next chunk's inputs meanwhile.
    source.prefetch(at: offset + chunkLength)
    source.prefetch(at: offset + chunkLength + 8)
    sum0 += softplusFromParts(zBuffer, expBuffer, offset * stride)
    sum1 += softplusFromParts(zBuffer, expBuffer, (offset + 8) * stride)
    offset += 16
  }
  while offset < count {
    let losses = softplusFromParts(zBuffer, expBuffer, offset * stride)
    let isPadding = laneIndexVector() .>= Int64(count - offset)
    sum0 += losses.replacing(with: 0, where: isPadding)
    offset += 8
  }
  return (sum0 + sum1).sum()
}

@inline(always)
func softplusFromParts(
  _ zBuffer: UnsafeMutableRawPointer,
  _ expBuffer: UnsafeMutableRawPointer,
  _ byteOffset: Int
) -> Double8 {
  let z = zBuffer.loadUnaligned(fromByteOffset: byteOffset, as: Double8.self)
  let e = expBuffer.loadUnaligned(
    fromByteOffset: byteOffset,
    as: Double8.self
  )
  let zero = Double8(repeating: 0)
  return z.replacing(with: zero, where: z .< zero) + logOnePlusUnit(e)
}

/// Computes the sum of per-pair losses over one chunk, forming delta inside
/// the SIMD loop. `scratch` has room for `2 * chunkLength` doubles.
func fusedChunkLossSum(
  _ batch: BatchPointers,
  count: Int,
  beta: Double,
  scratch: UnsafeMutablePointer<Double>
) -> Double {
  sumNegativeLogSigmoid(batch, count: count, beta: beta, scratch: scratch)
}

/// Computes the sum of per-pair losses over one chunk, forming delta with
/// BLAS in the first half of `scratch` (`2 * chunkLength` doubles).
/// The softplus passes then overwrite delta in place.
func blasChunkLossSum(
  _ batch: BatchPointers,
  count: Int,
  beta: Double,
  scratch: UnsafeMutablePointer<Double>
) -> Double {
  blasDelta(
    count,
    policyChosen: batch.policyChosen,
    policyRejected: batch.policyRejected,
    referenceChosen: batch.referenceChosen,
    referenceRejected: batch.referenceRejected,
    chosen: scratch,
    rejected: scratch + chunkLength
  )
  let deltas = BufferedDeltas(deltas: UnsafePointer(scratch), batch: batch)
  return sumNegativeLogSigmoid(
    deltas,
    count: count,
    beta: beta,
    scratch: scratch
  )
}

/// Computes the mean loss of `count > 0` pairs, chunk by chunk.
func meanLossKernel(
  _ batch: BatchPointers,
  count: Int,
  beta: Double,
  strategy: DeltaStrategy
) -> Double {
  let scratch = dpo_thread_scratch()!
  var total = CompensatedSum()
  var start = 0
  while start < count {
    let length = min(chunkLength, count - start)
    let chunk = batch.advanced(by: start)
    switch strategy {
    case .fused:
      total.add(
        fusedChunkLossSum(chunk, count: length, beta: beta, scratch: scratch)
      )
    case .blas:
      total.add(
        blasChunkLossSum(chunk, count: length, beta: beta, scratch: scratch)
      )
    }
    start += length
  }
  return total.value / Double(count)
}
