"""Each compared layer's share of the random-CNN loss and of its gradient (a Markdown table).

    python tools/layer_shares.py [--tasks sr segmentation] [--inits gpl kaiming]
        [--balances none init target] [--layers ...] [--distance l1] [--loss-options key=value ...]

The logic lives in ``experiments.analysis.layer_shares``.
"""
import os
import sys

# experiments/ is research code beside the package, not installed: import it from this checkout
# (the repository root, the parent of tools/).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.analysis.layer_shares import main  # noqa: E402

if __name__ == "__main__":
    main()
