// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

// SwiftPM needs one source file per C target. Everything is in the header.
#include "CPUFeatures.h"
