"""Write procedurally drawn shapes as a COCO-format instance-segmentation dataset.

    python tools/make_coco_shapes.py DATA_ROOT [--num-train 8] [--num-val 4] [--size 128] [--seed 0]
"""
import os
import sys

# experiments/ is research code beside the package, not installed: import it from this checkout
# (the repository root, the parent of tools/).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.datasets.coco_shapes import main  # noqa: E402

if __name__ == "__main__":
    main()
