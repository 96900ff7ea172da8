"""Ablation of the losses' settings on a demo task, each variant against its loss's default and the baseline.

    python tools/ablate.py {segmentation,super_resolution} [--loss random_cnn|patch_mmd|both] [--seeds 3]
        [--iters N] [--parallel 2] [--out ablation_report] [--arms NAME ...] [--quick]
"""
import os
import sys
import warnings

# The pinned frameworks warn about their own deprecations on import; the tool's output is its results.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

# experiments/ is research code beside the package, not installed: import it from this checkout
# (the repository root, the parent of tools/).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.ablation import main  # noqa: E402

if __name__ == "__main__":
    main()
