"""Write procedurally drawn shapes as a COCO-format instance-segmentation dataset.

    python tools/make_coco_shapes.py DATA_ROOT [--num-train 8] [--num-val 4] [--size 128] [--seed 0]
"""
from randperc_plugins.datasets.coco_shapes import main

if __name__ == "__main__":
    main()
