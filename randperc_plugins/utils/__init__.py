"""Helpers of ``tools/`` and ``tests/`` that are not losses: framework baselines for smoke runs and
benchmarks. They import the frameworks lazily, inside functions."""
