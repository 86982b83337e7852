// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

/// The text that `dpo-loss --help` prints.
let helpText = """
  USAGE: dpo-loss --policy-chosen FILE --policy-rejected FILE
                  --reference-chosen FILE --reference-rejected FILE
                  [OPTIONS]
         dpo-loss --table FILE [OPTIONS]

  Computes the Direct Preference Optimization (DPO) loss of a batch of
  preference pairs from saved sequence log-probs, with the metrics that TRL
  logs, and optionally the per-pair losses, rewards and gradients:

    delta_i = (pc_i - rc_i) - (pr_i - rr_i)
    loss    = sum_i w_i * softplus(-beta * delta_i) / sum_i w_i

  where pc, pr are the policy log-probs of the chosen and rejected responses,
  rc, rr the reference model's, and w_i the weights (1 by default).
  Log-probs are in nats (natural log), so the loss and rewards are too.
  Values are computed in float64.

  INPUT (the four .npy files, or --table):
    --policy-chosen FILE       Policy log-probs of the chosen responses: a
                               1-D little-endian float64 or float32 .npy
                               array in C order, one value per pair.
                               float64 files are memory-mapped, and float32
                               values are widened exactly to float64.
    --policy-rejected FILE     Policy log-probs of the rejected responses.
    --reference-chosen FILE    Reference-model log-probs of the chosen
                               responses.
    --reference-rejected FILE  Reference-model log-probs of the rejected
                               responses.
    --table FILE               A CSV file (TSV if the name ends in .tsv or
                               the header contains a tab) with one row per
                               pair. The header names the columns
                               policy_chosen, policy_rejected,
                               reference_chosen and reference_rejected, or
                               TRL's chosen_logps, rejected_logps,
                               ref_chosen_logps and ref_rejected_logps.
                               Other columns are ignored. Cells are
                               decimal numbers, nan, inf or -inf. A field
                               in double quotes may contain the delimiter,
                               line breaks and doubled quotes (RFC 4180),
                               as pandas to_csv writes text columns. Not
                               with the .npy options.

  OPTIONS:
    --beta NUMBER              Inverse temperature of the implicit reward,
                               a finite, non-negative decimal number
                               (dimensionless). Default: 0.1.
    --weights FILE             Per-pair weights, finite and non-negative
                               with a positive sum. 0 masks a pair, and the
                               loss and metrics become weighted means. A
                               name ending in .npy is read as a 1-D float64
                               or float32 .npy array. Any other file is
                               text with one decimal weight per line (a
                               one-column CSV or TSV): blank lines are
                               skipped, and a first line that starts with
                               a letter, other than the words nan, inf and
                               infinity, is a header.
                               Default: every pair has weight 1.
    --strategy NAME            How delta is formed: fused (one SIMD pass)
                               or blas (OpenBLAS dcopy and daxpy). Both
                               give the same delta bit for bit.
                               Default: fused.
    --json                     Print one JSON object instead of text, with
                               the keys loss, rewards/chosen,
                               rewards/rejected, rewards/accuracies,
                               rewards/margins, logps/chosen,
                               logps/rejected, n (pairs), beta, strategy,
                               load_seconds, compute_seconds and, with
                               --per-example, write_seconds. NaN and
                               infinities are the strings "NaN",
                               "Infinity" and "-Infinity".
                               Default: aligned text.
    --per-example OUT          Write the per-pair results as float64. If
                               OUT ends in .csv or .tsv, write one table
                               with the columns below. Otherwise OUT is a
                               directory, created if missing, that gets
                               losses.npy, chosen_rewards.npy,
                               rejected_rewards.npy, grad_policy_chosen.npy
                               and grad_policy_rejected.npy. Files of those
                               names are replaced: all five are written to
                               temporary files first and renamed into place
                               only after every write succeeded, so a
                               failed write leaves earlier results
                               unchanged. If a rename fails midway, the
                               files renamed before it have the new results
                               and the rest the old, and the error lists
                               the renamed files. Default: not written.
                                 losses                unweighted loss
                                                       softplus(-beta*delta)
                                 chosen_rewards        beta * (pc - rc)
                                 rejected_rewards      beta * (pr - rr)
                                 grad_policy_chosen    d loss / d pc_i, with
                                                       w_i / sum_i w_i
                                 grad_policy_rejected  d loss / d pr_i
    -h, --help                 Print this help and exit.

  OUTPUT:
    The loss and the metrics under TRL's names, which are weighted means
    with --weights. rewards/accuracies counts a tie as wrong. Then the
    number of pairs, beta, the strategy, and three wall times in seconds:
    load (opening, parsing and reading the input files into memory),
    compute (the kernel pass, plus filling the per-pair arrays with
    --per-example) and, with --per-example, write. Nothing is written to an
    output path when an input is invalid.

  EXIT STATUS:
    0  Success.
    1  An input file or its data is invalid, or an output cannot be
       written. The message names the file.
    2  Usage error: unknown option, missing or invalid option value, or
       missing or conflicting inputs.

  """
