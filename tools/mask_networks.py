"""Random networks for 28x28 ROI masks compared offline (a Markdown table).

    python tools/mask_networks.py [--seeds 3] [--num-rois 64]

The logic lives in ``randperc_plugins.analysis.mask_networks``.
"""
from randperc_plugins.analysis.mask_networks import main

if __name__ == "__main__":
    main()
