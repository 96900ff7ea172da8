"""Offline demo: baseline against each loss through the frameworks' own runners, compared and reported.

    python tools/demo.py [--preset cpu|gpu|quick | --quick] [--device auto|cpu|cuda] [--out demo_report]
                         [--seeds N] [--iters N] [--parallel N]
"""
import warnings

# The pinned frameworks warn about their own deprecations on import; the demo's output is its results.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

from randperc_plugins.demo import main  # noqa: E402

if __name__ == "__main__":
    main()
