"""Each compared layer's share of the random-CNN loss and of its gradient (a Markdown table).

    python tools/layer_shares.py [--tasks sr segmentation] [--inits gpl kaiming]
        [--balances none init target] [--layers ...] [--distance l1] [--loss-options key=value ...]

The logic lives in ``randperc_plugins.analysis.layer_shares``.
"""
from randperc_plugins.analysis.layer_shares import main

if __name__ == "__main__":
    main()
