"""Write a small SR dataset in mmagic's DIV2K layout (GT and bicubic x2/x3/x4 inputs) from photographs.

    python tools/make_sr_dataset.py DATA_ROOT [--images DIR] [--scales 2 3 4] [--crop-size 96] [--num-val 1]
"""
from randperc_plugins.datasets.sr_photos import main

if __name__ == "__main__":
    main()
