"""Compare training runs of any integrated framework against a baseline (``tools/compare.py``).

``logs`` reads what the frameworks write, ``arms`` groups runs (seeds) into arms, ``stats`` computes
seed statistics and intervals, ``report`` writes tables and curves, ``cli`` is the command line.
"""
from .arms import Arm, load_arms
from .logs import LogError, Run, read_run
from .report import write_report
from .stats import Difference, difference, mean_std

__all__ = ["Arm", "load_arms", "LogError", "Run", "read_run", "write_report", "Difference", "difference",
           "mean_std"]
