"""Benchmarks: each `bench_*.py` prints a Markdown section whose figures are ratios against
a baseline measured in the same run. `python -m benchmarks` runs them all and writes
docs/benchmarks.md."""
