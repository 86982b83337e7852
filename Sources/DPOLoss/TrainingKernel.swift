// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import CKernelSupport

// The training pass: loss, gradients, rewards and metric sums of a batch in
// two passes per chunk. Each hot loop is its own generic function, specialized
// for where the log-ratios and the weights come from, so that LLVM compiles a
// tight loop for each case and does not merge them into one loop that spills.

@inline(always)
func store(
  _ vector: Double8,
  to pointer: UnsafeMutablePointer<Double>,
  lanes: Int
) {
  if lanes == 8 {
    UnsafeMutableRawPointer(pointer).storeBytes(of: vector, as: Double8.self)
  } else {
    for lane in 0..<lanes {
      pointer[lane] = vector[lane]
    }
  }
}

/// Stores a whole vector; with `streaming`, bypasses the cache.
@inline(always)
func store(
  _ vector: Double8,
  to pointer: UnsafeMutablePointer<Double>,
  streaming: Bool
) {
  if streaming {
    dpo_stream_store8(pointer, vector)
  } else {
    store(vector, to: pointer)
  }
}

@inline(always)
func store(_ vector: Double8, to pointer: UnsafeMutablePointer<Double>) {
  UnsafeMutableRawPointer(pointer).storeBytes(of: vector, as: Double8.self)
}

@inline(always)
func load(_ pointer: UnsafePointer<Double>, lanes: Int) -> Double8 {
  lanes == 8 ? load(pointer) : loadPartial(pointer, count: lanes)
}

/// A source of the log-ratios `pc - rc` and `pr - rr` that pass 1 reads.
protocol LogRatioSource {
  /// Returns the log-ratios of the `lanes` pairs at `offset`, 0 past them.
  func ratios(at offset: Int, lanes: Int) -> (
    chosen: Double8, rejected: Double8
  )
}

/// Log-ratios formed in registers from the four inputs.
struct FusedLogRatios: LogRatioSource {
  var batch: BatchPointers

  @inline(always)
  func ratios(
    at offset: Int,
    lanes: Int
  ) -> (chosen: Double8, rejected: Double8) {
    let chosen =
      load(batch.policyChosen + offset, lanes: lanes)
      - load(batch.referenceChosen + offset, lanes: lanes)
    let rejected =
      load(batch.policyRejected + offset, lanes: lanes)
      - load(batch.referenceRejected + offset, lanes: lanes)
    return (chosen, rejected)
  }
}

/// Log-ratios that BLAS wrote into two chunk buffers.
struct BufferedLogRatios: LogRatioSource {
  var chosen: UnsafePointer<Double>
  var rejected: UnsafePointer<Double>

  @inline(always)
  func ratios(
    at offset: Int,
    lanes: Int
  ) -> (chosen: Double8, rejected: Double8) {
    (load(chosen + offset, lanes: lanes), load(rejected + offset, lanes: lanes))
  }
}

/// A source of the per-pair weights.
protocol WeightSource {
  /// Whether a weight can be 0, so that sums must mask it.
  static var mayMask: Bool { get }
  /// Returns the weights of the `lanes` pairs at `offset`, 0 past them.
  func weights(at offset: Int, lanes: Int) -> Double8
}

/// Weight 1 for every pair: no masking but the padding of the tail.
struct UnitWeights: WeightSource {
  static var mayMask: Bool { false }

  @inline(always)
  func weights(at offset: Int, lanes: Int) -> Double8 {
    Double8(repeating: 1)
  }
}

/// Weights read from memory, any of which may be 0.
struct BufferedWeights: WeightSource {
  var pointer: UnsafePointer<Double>

  static var mayMask: Bool { true }

  @inline(always)
  func weights(at offset: Int, lanes: Int) -> Double8 {
    load(pointer + offset, lanes: lanes)
  }
}

/// Whether whole output vectors bypass the cache, as a type so that each
/// case gets its own loop without a branch per store.
protocol StoreMode {
  static var streams: Bool { get }
}

/// Ordinary stores, for outputs a caller reads back from cache.
struct CachedStores: StoreMode {
  static var streams: Bool { false }
}

/// Streaming stores, for outputs larger than the caches.
struct StreamingStores: StoreMode {
  static var streams: Bool { true }
}

/// Returns `weight * value`, or 0 where the weight is 0, so that a masked
/// pair adds nothing even when its value is NaN or infinite. With
/// `mayMask == false` (every weight is 1) it returns `value`.
@inline(always)
func weighted(
  _ value: Double8,
  _ weight: Double8,
  mayMask: Bool
) -> Double8 {
  guard mayMask else { return value }
  return (weight * value).replacing(with: 0, where: weight .== 0)
}

/// The factor `beta * w_i / W` of each gradient, in a form that keeps tiny
/// weights exact.
///
/// Weights are first scaled by two powers of two whose product brings the
/// weight total `W` into [1, 2). A subnormal weight then keeps its
/// precision, and `beta / W` cannot overflow. Computed directly, `beta / W`
/// is infinite for a weight total below about 5.6e-310, while each
/// `beta * sigmoid * w_i / W` is finite.
struct GradientScale {
  /// Powers of two whose product is `2^-exponent(W)`, each a normal double.
  var weightScales: (Double, Double)
  /// `beta / (W * weightScales.0 * weightScales.1)`, in (beta / 2, beta].
  var scaledFactor: Double
  /// `beta / W`, for weights that are all 1. The same value as
  /// `scaledFactor` times the weight scales, so both paths round alike.
  var unitFactor: Double

  init(beta: Double, weightTotal: Double) {
    let exponent = -Int(weightTotal.exponent)
    let half = exponent / 2
    weightScales = (
      Double(sign: .plus, exponent: half, significand: 1),
      Double(sign: .plus, exponent: exponent - half, significand: 1)
    )
    scaledFactor = beta / weightTotal.significand
    // NOTE: without weights, a gradientWeightTotal below beta / 1.8e308
    // (about 5.6e-310 for beta = 0.1) makes this infinite.
    unitFactor = scaledFactor * weightScales.0 * weightScales.1
  }

  /// Returns `sigmoid * beta * weight / W`, or 0 where the weight is 0.
  /// With `mayMask == false` every weight is 1 and nothing is masked.
  @inline(always)
  func gradient(
    sigmoid: Double8,
    weight: Double8,
    mayMask: Bool
  ) -> Double8 {
    guard mayMask else { return sigmoid * unitFactor }
    let scaledWeight = weight * weightScales.0 * weightScales.1
    // The mask tests the weight: with beta = 0 a NaN pair's gradient stays
    // NaN, as in the reference.
    return weighted(sigmoid, scaledWeight, mayMask: true) * scaledFactor
  }
}

/// SIMD partial sums of one chunk's statistics.
struct ChunkSums {
  var loss = Double8(repeating: 0)
  var chosenReward = Double8(repeating: 0)
  var rejectedReward = Double8(repeating: 0)
  var margin = Double8(repeating: 0)
  var correct = Double8(repeating: 0)
  var chosenLogProb = Double8(repeating: 0)
  var rejectedLogProb = Double8(repeating: 0)

  @inline(always)
  mutating func add(_ other: ChunkSums) {
    loss += other.loss
    chosenReward += other.chosenReward
    rejectedReward += other.rejectedReward
    margin += other.margin
    correct += other.correct
    chosenLogProb += other.chosenLogProb
    rejectedLogProb += other.rejectedLogProb
  }

  func add(to statistics: inout DPOStatistics) {
    statistics.lossSum.add(loss.sum())
    statistics.chosenRewardSum.add(chosenReward.sum())
    statistics.rejectedRewardSum.add(rejectedReward.sum())
    statistics.rewardMarginSum.add(margin.sum())
    statistics.correctWeightSum.add(correct.sum())
    statistics.chosenLogProbSum.add(chosenLogProb.sum())
    statistics.rejectedLogProbSum.add(rejectedLogProb.sum())
  }
}

/// One chunk of the training pass: pointers, scratch and settings.
struct TrainingChunk {
  var batch: BatchPointers
  var count: Int
  var beta: Double
  /// `beta / W`, where `W` is the weight total the gradient divides by.
  var gradientScale: GradientScale
  var outputs: OutputPointers
  /// z, then exp(-|z|), then the weights, `chunkLength` doubles each (the
  /// whole per-thread scratch buffer). With the BLAS strategy the first two
  /// hold the log-ratios before pass 1.
  var scratch: UnsafeMutablePointer<Double>

  /// Whether whole output vectors bypass the cache (large batches only).
  var streamsOutputs: Bool

  var zBuffer: UnsafeMutablePointer<Double> {
    @inline(always) get { scratch }
  }
  var expBuffer: UnsafeMutablePointer<Double> {
    @inline(always) get { scratch + chunkLength }
  }
  var weightBuffer: UnsafeMutablePointer<Double> {
    @inline(always) get { scratch + 2 * chunkLength }
  }

  /// Writes the `lanes` first lanes of an output, streaming whole vectors
  /// when `streaming` is set.
  @inline(always)
  func storeOutput(
    _ vector: Double8,
    to pointer: UnsafeMutablePointer<Double>,
    lanes: Int,
    streaming: Bool
  ) {
    if lanes == 8 {
      store(vector, to: pointer, streaming: streaming)
    } else {
      store(vector, to: pointer, lanes: lanes)
    }
  }

  /// Runs both passes over the chunk and adds its sums to `statistics`
  /// (all but `pairCount` and `weightSum`).
  func run(
    strategy: DeltaStrategy,
    weights: UnsafePointer<Double>?,
    statistics: inout DPOStatistics
  ) {
    assert(count > 0)
    assert(count <= chunkLength)
    var sums = ChunkSums()
    switch (strategy, weights) {
    case (.fused, nil):
      firstPass(FusedLogRatios(batch: batch), UnitWeights(), &sums)
    case (.fused, let pointer?):
      firstPass(
        FusedLogRatios(batch: batch),
        BufferedWeights(pointer: pointer),
        &sums
      )
    case (.blas, _):
      // The log-ratios pc - rc and pr - rr, which pass 1 overwrites.
      blasCopy(count, from: batch.policyChosen, to: zBuffer)
      blasAXPY(count, alpha: -1, x: batch.referenceChosen, y: zBuffer)
      blasCopy(count, from: batch.policyRejected, to: expBuffer)
      blasAXPY(count, alpha: -1, x: batch.referenceRejected, y: expBuffer)
      let ratios = BufferedLogRatios(
        chosen: UnsafePointer(zBuffer),
        rejected: UnsafePointer(expBuffer)
      )
      if let weights {
        firstPass(ratios, BufferedWeights(pointer: weights), &sums)
      } else {
        firstPass(ratios, UnitWeights(), &sums)
      }
    }
    if weights == nil {
      secondPass(UnitWeights.self, &sums)
    } else {
      secondPass(BufferedWeights.self, &sums)
    }
    sums.add(to: &statistics)
  }

  /// Pass 1: forms the log-ratios, stores z, exp(-|z|) and the weights,
  /// writes rewards and adds the reward and log-prob sums. Full vectors run
  /// in ``firstPassLoop(_:_:from:to:_:)``, the tail masks its padding.
  @inline(always)
  func firstPass<Ratios: LogRatioSource, Weights: WeightSource>(
    _ ratios: Ratios,
    _ weights: Weights,
    _ sums: inout ChunkSums
  ) {
    let fullEnd = count & ~7
    firstPassLoop(ratios, weights, from: 0, to: fullEnd, &sums)
    let tailLanes = count - fullEnd
    if tailLanes > 0 {
      let padding = laneIndexVector() .>= Int64(tailLanes)
      let weight = weights.weights(at: fullEnd, lanes: tailLanes)
        .replacing(with: 0, where: padding)
      firstPassVector(
        ratios,
        at: fullEnd,
        lanes: tailLanes,
        weight: weight,
        mayMask: true,
        &sums
      )
    }
  }

  /// Runs pass 1 over the full vectors in `start..<end`.
  @inline(never)
  func firstPassLoop<Ratios: LogRatioSource, Weights: WeightSource>(
    _ ratios: Ratios,
    _ weights: Weights,
    from start: Int,
    to end: Int,
    _ sums: inout ChunkSums
  ) {
    // A fresh local, not a copy of `sums`: LLVM may not keep a value that
    // shares memory with an inout argument in registers across the stores.
    var local = ChunkSums()
    var offset = start
    while offset < end {
      firstPassVector(
        ratios,
        at: offset,
        lanes: 8,
        weight: weights.weights(at: offset, lanes: 8),
        mayMask: Weights.mayMask,
        &local
      )
      offset += 8
    }
    sums.add(local)
  }

  @inline(always)
  func firstPassVector<Ratios: LogRatioSource>(
    _ ratios: Ratios,
    at offset: Int,
    lanes: Int,
    weight: Double8,
    mayMask: Bool,
    _ sums: inout ChunkSums
  ) {
    let zero = Double8(repeating: 0)
    let betaVector = Double8(repeating: beta)
    let (chosenRatio, rejectedRatio) = ratios.ratios(at: offset, lanes: lanes)
    let z = -betaVector * (chosenRatio - rejectedRatio)
    let magnitude = z.replacing(with: -z, where: z .< zero)
    store(z, to: zBuffer + offset)
    store(exponentialNonPositive(-magnitude), to: expBuffer + offset)
    if mayMask {
      // Pass 2 reads the weights only where it masks.
      store(weight, to: weightBuffer + offset)
    }

    let chosenReward = betaVector * chosenRatio
    let rejectedReward = betaVector * rejectedRatio
    if let pointer = outputs.chosenRewards {
      storeOutput(
        chosenReward,
        to: pointer + offset,
        lanes: lanes,
        streaming: streamsOutputs
      )
    }
    if let pointer = outputs.rejectedRewards {
      storeOutput(
        rejectedReward,
        to: pointer + offset,
        lanes: lanes,
        streaming: streamsOutputs
      )
    }
    let policyChosen = load(batch.policyChosen + offset, lanes: lanes)
    let policyRejected = load(batch.policyRejected + offset, lanes: lanes)
    sums.chosenReward += weighted(chosenReward, weight, mayMask: mayMask)
    sums.rejectedReward += weighted(rejectedReward, weight, mayMask: mayMask)
    sums.margin += weighted(
      chosenReward - rejectedReward,
      weight,
      mayMask: mayMask
    )
    sums.correct += zero.replacing(
      with: weight,
      where: chosenReward .> rejectedReward
    )
    sums.chosenLogProb += weighted(policyChosen, weight, mayMask: mayMask)
    sums.rejectedLogProb += weighted(policyRejected, weight, mayMask: mayMask)
  }

  /// Pass 2: finishes the softplus, writes losses and gradients and adds the
  /// loss sum. Pass 1 stored whole vectors, so the tail reads its padding
  /// lanes (weight 0) from scratch.
  @inline(always)
  func secondPass<Weights: WeightSource>(
    _ weights: Weights.Type,
    _ sums: inout ChunkSums
  ) {
    let fullEnd = count & ~7
    let wantsGradient = outputs.wantsGradient
    if streamsOutputs {
      secondPassLoop(
        Weights.self,
        StreamingStores.self,
        to: fullEnd,
        wantsGradient: wantsGradient,
        &sums
      )
    } else {
      secondPassLoop(
        Weights.self,
        CachedStores.self,
        to: fullEnd,
        wantsGradient: wantsGradient,
        &sums
      )
    }
    let tailLanes = count - fullEnd
    if tailLanes > 0 {
      secondPassVector(
        at: fullEnd,
        lanes: tailLanes,
        mayMask: true,
        streaming: false,
        wantsGradient: wantsGradient,
        &sums
      )
    }
  }

  /// Runs pass 2 over the full vectors in `0..<end`.
  @inline(never)
  func secondPassLoop<Weights: WeightSource, Stores: StoreMode>(
    _ weights: Weights.Type,
    _ stores: Stores.Type,
    to end: Int,
    wantsGradient: Bool,
    _ sums: inout ChunkSums
  ) {
    // A fresh local, not a copy of `sums`: LLVM may not keep a value that
    // shares memory with an inout argument in registers across the stores.
    var local = ChunkSums()
    var offset = 0
    while offset < end {
      // Pass 2 reads no input, so fetch the next chunk's inputs meanwhile.
      batch.prefetch(at: offset + chunkLength)
      secondPassVector(
        at: offset,
        lanes: 8,
        mayMask: Weights.mayMask,
        streaming: Stores.streams,
        wantsGradient: wantsGradient,
        &local
      )
      offset += 8
    }
    sums.add(local)
  }

  @inline(always)
  func secondPassVector(
    at offset: Int,
    lanes: Int,
    mayMask: Bool,
    streaming: Bool,
    wantsGradient: Bool,
    _ sums: inout ChunkSums
  ) {
    let zero = Double8(repeating: 0)
    let z = load(zBuffer + offset)
    let e = load(expBuffer + offset)
    let weight = mayMask ? load(weightBuffer + offset) : Double8(repeating: 1)
    let (logOnePlus, reciprocal) = logOnePlusUnitAndReciprocal(e)
    let loss = z.replacing(with: zero, where: z .< zero) + logOnePlus
    sums.loss += weighted(loss, weight, mayMask: mayMask)
    if let pointer = outputs.losses {
      storeOutput(
        loss,
        to: pointer + offset,
        lanes: lanes,
        streaming: streaming
      )
    }
    guard wantsGradient else { return }

    // sigmoid(z) = 1 / (1 + e) for z >= 0 and e / (1 + e) below 0.
    let one = Double8(repeating: 1)
    let sigmoid = e.replacing(with: one, where: z .>= zero) * reciprocal
    let gradient = gradientScale.gradient(
      sigmoid: sigmoid,
      weight: weight,
      mayMask: mayMask
    )
    let negated = -gradient
    if let pointer = outputs.policyChosenGradient {
      storeOutput(
        negated,
        to: pointer + offset,
        lanes: lanes,
        streaming: streaming
      )
    }
    if let pointer = outputs.policyRejectedGradient {
      storeOutput(
        gradient,
        to: pointer + offset,
        lanes: lanes,
        streaming: streaming
      )
    }
    if let pointer = outputs.referenceChosenGradient {
      storeOutput(
        gradient,
        to: pointer + offset,
        lanes: lanes,
        streaming: streaming
      )
    }
    if let pointer = outputs.referenceRejectedGradient {
      storeOutput(
        negated,
        to: pointer + offset,
        lanes: lanes,
        streaming: streaming
      )
    }
  }
}

/// Pairs from which per-pair outputs are written with streaming stores. At
/// this size one output array (8 MiB) no longer fits in the L2 caches of
/// current x86-64 server cores, so a caller reads it back from L3 or memory
/// in any case, and streaming saves the read-for-ownership traffic.
let streamingThreshold = 1 << 20

/// Runs ``TrainingChunk`` over `count > 0` pairs and returns the statistics
/// without `pairCount` and `weightSum`.
func trainingKernel(
  _ batch: BatchPointers,
  weights: UnsafePointer<Double>?,
  count: Int,
  beta: Double,
  gradientScale: GradientScale,
  strategy: DeltaStrategy,
  outputs: OutputPointers
) -> DPOStatistics {
  let streamsOutputs =
    count >= streamingThreshold && outputs.allAligned(to: 16)
  defer {
    if streamsOutputs { dpo_store_fence() }
  }
  let scratch = dpo_thread_scratch()!
  var statistics = DPOStatistics()
  var start = 0
  while start < count {
    let length = min(chunkLength, count - start)
    let chunk = TrainingChunk(
      batch: batch.advanced(by: start),
      count: length,
      beta: beta,
      gradientScale: gradientScale,
      outputs: outputs.advanced(by: start),
      scratch: scratch,
      streamsOutputs: streamsOutputs
    )
    chunk.run(
      strategy: strategy,
      weights: weights.map { $0 + start },
      statistics: &statistics
    )
    start += length
  }
  return statistics
}
