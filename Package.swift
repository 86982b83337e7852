// swift-tools-version: 6.2
// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

import PackageDescription

let package = Package(
  name: "DPOLoss",
  products: [
    .library(name: "DPOLoss", targets: ["DPOLoss"]),
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
    // Header-only: exposes the C compiler's target-feature macros to Swift.
    .target(name: "CPUFeatures", path: "Sources/CPUFeatures"),
    .target(name: "DPOLoss", dependencies: ["COpenBLAS", "CPUFeatures"]),
    .executableTarget(
      name: "dpo-bench",
      dependencies: ["DPOLoss", "CPUFeatures"],
      path: "Benchmarks/dpo-bench"
    ),
    .testTarget(name: "DPOLossTests", dependencies: ["DPOLoss"]),
  ]
)
