// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

#ifndef DPOLOSS_CPUFEATURES_H
#define DPOLOSS_CPUFEATURES_H

// Swift has no `#if` for CPU features. The Clang importer compiles this header
// with the same target CPU as the Swift code (`-target-cpu`), so these
// constants tell Swift which instructions the build may use.

#if defined(__FMA__)
#define DPO_TARGET_HAS_FMA 1
#else
#define DPO_TARGET_HAS_FMA 0
#endif

#if defined(__AVX2__)
#define DPO_TARGET_HAS_AVX2 1
#else
#define DPO_TARGET_HAS_AVX2 0
#endif

#if defined(__AVX512F__)
#define DPO_TARGET_HAS_AVX512F 1
#else
#define DPO_TARGET_HAS_AVX512F 0
#endif


#endif
