"""Record a demo run in the docs: copy REPORT/results.json and its pictures into docs/ and rewrite the
demo results of docs/demo.md and the README's headline table (each between its markers) from that record.

    python tools/demo_readme.py [REPORT]    # REPORT: a `tools/demo.py` output folder (default demo_report)
"""
import argparse
import os
import sys

# experiments/ is research code beside the package, not installed: import it from this checkout
# (the repository root, the parent of tools/).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.demo.readme import update  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", nargs="?", default="demo_report")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.report, "results.json")):
        parser.error(f"{args.report}: no results.json; expected the output folder of tools/demo.py")
    update(args.report)
    print(f"docs/demo.md and README.md: demo results rewritten from {args.report}/results.json "
          "(recorded in docs/)")


if __name__ == "__main__":
    main()
