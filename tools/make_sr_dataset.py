"""Write a small SR dataset in mmagic's DIV2K layout (GT and bicubic x2/x3/x4 inputs) from photographs.

    python tools/make_sr_dataset.py DATA_ROOT [--images DIR] [--scales 2 3 4] [--crop-size 96] [--num-val 1]
"""
import os
import sys

# experiments/ is research code beside the package, not installed: import it from this checkout
# (the repository root, the parent of tools/).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.datasets.sr_photos import main  # noqa: E402

if __name__ == "__main__":
    main()
