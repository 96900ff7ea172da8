"""Benchmark the perceptual losses and the frameworks' train steps with them (``randperc-benchmark``).

    python tools/benchmark.py SUBCOMMAND [options]      # `--help` lists the subcommands
"""
import sys

from randperc_plugins.benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
