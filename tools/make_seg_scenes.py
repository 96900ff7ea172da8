"""Write procedurally drawn segmentation scenes in mmseg's folder format.

    python tools/make_seg_scenes.py DATA_ROOT [--kind shapes|thin] [--num-train 8] [--num-val 2] [--size 64] [--num-classes 4]
"""
import os
import sys

# experiments/ is research code beside the package, not installed: import it from this checkout
# (the repository root, the parent of tools/).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.datasets.seg_scenes import main  # noqa: E402

if __name__ == "__main__":
    main()
