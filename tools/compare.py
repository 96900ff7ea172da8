"""Compare runs against a baseline (MMSegmentation, MMagic, MMDetection, Detectron2 work dirs).

    python tools/compare.py BASELINE RUN [RUN ...] [--name NAME ...] [--out DIR] [--ci auto|welch|bootstrap]

Each argument is a work dir, a folder of work dirs (the seeds of one arm) or a quoted glob of them.
"""
from randperc_plugins.compare.cli import main

if __name__ == "__main__":
    main()
