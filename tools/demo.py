"""Offline demo: baseline against each loss through the frameworks' own runners, compared and reported.

    python tools/demo.py [--preset cpu|gpu|quick | --quick] [--device auto|cpu|cuda] [--out demo_report]
                         [--seeds N] [--iters N] [--parallel N]
"""
import os
import sys
import warnings

# The pinned frameworks warn about their own deprecations on import; the demo's output is its results.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

# experiments/ is research code beside the package, not installed: import it from this checkout
# (the repository root, the parent of tools/).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.demo import main  # noqa: E402

if __name__ == "__main__":
    main()
