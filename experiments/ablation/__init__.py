"""Ablation of the losses' settings on the demo's offline tasks (``tools/ablate.py``).

    python tools/ablate.py {segmentation,super_resolution} [--loss random_cnn|patch_mmd|both] [--seeds 3]
        [--iters N] [--parallel 2] [--out ablation_report] [--arms NAME ...] [--quick]

``arms`` holds the table of variants (``ABLATIONS``: settings as data, over ``TASK_DEFAULTS``) and checks
them, ``weights`` gives each arm the reference arm's gradient share against the baseline loss, ``stages``
trains them through the demo's machinery, ``table`` writes the comparison as one row per (arm, metric),
``cli`` is the command line.
"""
from .arms import ABLATIONS, LOSSES, AblationArm, arms_of, check_settings, select_arms
from .cli import main
from .weights import CALIBRATION_POINTS, calibrated_weights, gradient_ratio

__all__ = ["ABLATIONS", "LOSSES", "AblationArm", "arms_of", "check_settings", "select_arms", "main",
           "CALIBRATION_POINTS", "calibrated_weights", "gradient_ratio"]
