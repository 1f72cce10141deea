"""tidu vs PyTorch eager on the CPU: the workloads W1–W7 of BENCHMARKS.md.

Run from the repository root: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks``
(``--help`` for the options). A benchmark is a program, not a test: CI never times anything.
"""
