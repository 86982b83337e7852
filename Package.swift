// swift-tools-version: 6.2
// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import PackageDescription

let package = Package(
  name: "DPOLoss",
  products: [
    .library(name: "DPOLoss", targets: ["DPOLoss"]),
    .library(name: "DPOLossFiles", targets: ["DPOLossFiles"]),
    .executable(name: "dpo-loss", targets: ["dpo-loss"]),
    .executable(name: "dpo-bench", targets: ["dpo-bench"]),
  ],
  targets: [
    // Debian's libopenblas-dev installs cblas.h and libopenblas.so.
    .systemLibrary(
      name: "COpenBLAS",
      path: "Sources/COpenBLAS",
      pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev"])]
    ),
    // What Swift cannot express itself: the build's target-feature macros,
    // streaming stores and thread-local scratch memory.
    .target(name: "CKernelSupport", path: "Sources/CKernelSupport"),
    .target(name: "DPOLoss", dependencies: ["COpenBLAS", "CKernelSupport"]),
    // Readers and writers of the .npy and CSV files that dpo-loss takes.
    .target(name: "DPOLossFiles"),
    // The dpo-loss command as a library, so tests can run it in-process.
    .target(name: "DPOLossCommand", dependencies: ["DPOLoss", "DPOLossFiles"]),
    .executableTarget(
      name: "dpo-loss",
      dependencies: ["DPOLossCommand"],
      path: "Sources/dpo-loss"
    ),
    .executableTarget(
      name: "dpo-bench",
      dependencies: ["DPOLoss", "CKernelSupport"],
      path: "Benchmarks/dpo-bench"
    ),
    // Test-only: counts heap allocations to prove the kernels make none.
    .target(name: "AllocationCounter", path: "Tests/AllocationCounter"),
    // Test-only: where the TRL reference data is, and temporary folders,
    // for every test target.
    .target(name: "DPOLossTestSupport", path: "Tests/DPOLossTestSupport"),
    .testTarget(
      name: "DPOLossTests",
      dependencies: [
        "DPOLoss", "DPOLossFiles", "AllocationCounter", "DPOLossTestSupport",
      ]
    ),
    .testTarget(
      name: "DPOLossFilesTests",
      dependencies: ["DPOLossFiles", "DPOLossTestSupport"]
    ),
    .testTarget(
      name: "DPOLossCommandTests",
      dependencies: [
        "DPOLossCommand", "DPOLossFiles", "dpo-loss", "DPOLossTestSupport",
      ]
    ),
  ]
)
