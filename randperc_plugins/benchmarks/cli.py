"""``randperc-benchmark`` (``tools/benchmark.py``): the losses and the frameworks' train steps with
them, as ratios measured in one process.

    randperc-benchmark SUBCOMMAND [options]      # `--help` after a subcommand lists its options
    randperc-benchmark all [--device cuda|cpu] [--quick]

Subcommands are the modules of ``randperc_plugins.benchmarks``; ``--help`` lists them with what each
measures. ``all`` runs the loss benchmarks (random-cnn, patch-mmd). On a CPU the shapes are reduced
(each table states its shapes); on a GPU they are the training shapes.
"""
from __future__ import annotations

import sys

import torch

from . import SUBCOMMANDS, load

LOSS_BENCHMARKS = ("random-cnn", "patch-mmd")


def main(argv=None) -> int:
    """Run one subcommand (or ``all``) with ``argv``; the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in (*SUBCOMMANDS, "all"):
        print(__doc__)
        width = max(map(len, SUBCOMMANDS))
        for name, (_, what) in SUBCOMMANDS.items():
            print(f"    {name.ljust(width)}  {what}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name, rest = argv[0], argv[1:]
    if name != "all":
        status = load(name).main(rest)
        return status if isinstance(status, int) else 0  # some return their tables
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for section in LOSS_BENCHMARKS:
        print(f"\n# {section}\n")
        load(section).main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
