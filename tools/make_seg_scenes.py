"""Write procedurally drawn segmentation scenes in mmseg's folder format.

    python tools/make_seg_scenes.py DATA_ROOT [--kind shapes|thin] [--num-train 8] [--num-val 2] [--size 64] [--num-classes 4]
"""
from randperc_plugins.datasets.seg_scenes import main

if __name__ == "__main__":
    main()
