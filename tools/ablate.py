"""Ablation of the losses' settings on a demo task, each variant against its loss's default and the baseline.

    python tools/ablate.py {segmentation,super_resolution} [--loss gpl|patch_mmd|both] [--seeds 3]
        [--iters N] [--parallel 2] [--out ablation_report] [--arms NAME ...] [--quick]
"""
import warnings

# The pinned frameworks warn about their own deprecations on import; the tool's output is its results.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

from randperc_plugins.ablation import main  # noqa: E402

if __name__ == "__main__":
    main()
