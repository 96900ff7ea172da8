"""Benchmark the perceptual losses and the frameworks' train steps with them: ratios in one process.

    python tools/benchmark.py SUBCOMMAND [options]      # `--help` after a subcommand lists its options
    python tools/benchmark.py all [--device cuda|cpu] [--quick]

Subcommands (modules of ``randperc_plugins.benchmarks``, listed by ``--help``).

``all`` runs the loss benchmarks (random-cnn, patch-mmd). On a CPU the shapes are reduced (each table
states its shapes); on a GPU they are the training shapes.
"""
from __future__ import annotations

import sys

import torch

from randperc_plugins import benchmarks

LOSS_BENCHMARKS = ("random-cnn", "patch-mmd")


def usage() -> str:
    """The module's docstring and every subcommand of ``benchmarks.SUBCOMMANDS`` with what it measures."""
    width = max(len(name) for name in benchmarks.SUBCOMMANDS)
    lines = [f"    {name:<{width}}  {what}" for name, (_, what) in benchmarks.SUBCOMMANDS.items()]
    return __doc__ + "\nSubcommands:\n" + "\n".join(lines) + f"\n    {'all':<{width}}  " \
        + ", ".join(LOSS_BENCHMARKS) + "\n"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in (*benchmarks.SUBCOMMANDS, "all"):
        print(usage())
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name, rest = argv[0], argv[1:]
    if name != "all":
        return benchmarks.load(name).main(rest)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for section in LOSS_BENCHMARKS:
        print(f"\n# {section}\n")
        benchmarks.load(section).main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
