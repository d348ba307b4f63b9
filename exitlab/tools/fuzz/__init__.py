"""exitlab's differential fuzzer (issue 7): exitlab looking for its own emulator bugs.

One fuzz case is CPU state plus instruction bytes plus what the device answers (Xen's emulator
fuzzer idea); every case is run by Unicorn as ground truth and then by each exitlab path, and
every place they disagree is classified, minimized and saved as a reproducer (mishegos' idea of
comparing a cohort of decoders per input). Modules, one job each:

- `case`      the `Case` value and its JSON form (reproducers, corpus files)
- `state`     random CPU state aimed at an MMIO window
- `gen`       the structured / havoc / contract / corpus generators
- `oracles`   run one case through the truth and every path; classify disagreements
- `explain`   the allow-list of known third-party deviations, one precise predicate each
- `minimize`  shrink a failing case (bytes first, then registers)
- `runner`    the seeded campaign, `--jobs` processes, Ctrl-C
- `report`    summary text / JSON and reproducer files
- `atheris_target`  the coverage-guided libFuzzer-style harness for the C extension
"""
