"""Random networks for 28x28 ROI masks compared offline (a Markdown table).

    python tools/mask_networks.py [--seeds 3] [--num-rois 64]

The logic lives in ``experiments.analysis.mask_networks``.
"""
import os
import sys

# experiments/ is research code beside the package, not installed: import it from this checkout
# (the repository root, the parent of tools/).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.analysis.mask_networks import main  # noqa: E402

if __name__ == "__main__":
    main()
