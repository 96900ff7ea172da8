"""The demo's recorded results in the documentation, rendered from the recorded run
``docs/demo_results.json`` (a copy of a demo's ``results.json``) with the demo's own renderer:

* ``docs/demo.md`` (:data:`PAGE`) holds the report's lead (:func:`page_block`: the regime checks, the
  answer per task, its table and its pictures) between :data:`START` and :data:`END`;
* ``README.md`` holds one headline table (:func:`headline_block`) between :data:`HEADLINE_START` and
  :data:`HEADLINE_END`.

Usage::

    python tools/demo_readme.py demo_report    # after `make demo`: record that run, rewrite both blocks

:func:`update` copies the report's ``results.json`` and pictures into ``docs/`` and writes both blocks
from that record; a test checks that each file's block is that rendering, so the figures in the
README and in the docs are what the demo wrote.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Dict, Tuple

from .report import TASKS, comparisons, difference_cells, render_summary

__all__ = ["START", "END", "HEADLINE_START", "HEADLINE_END", "PAGE", "README", "RESULTS", "PICTURES",
           "page_block", "headline_block", "current_block", "replace_block", "update"]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START = "<!-- demo results: written by `python tools/demo_readme.py demo_report`, do not edit by hand -->"
END = "<!-- end of demo results -->"
HEADLINE_START = ("<!-- demo headline: written by `python tools/demo_readme.py demo_report`, "
                  "do not edit by hand -->")
HEADLINE_END = "<!-- end of demo headline -->"
#: The documentation page that holds the full block, and the README that holds the headline table.
PAGE = "docs/demo.md"
README = "README.md"
RESULTS = "docs/demo_results.json"
# task -> (the picture in a demo report, its copy in docs/)
PICTURES = {"super_resolution": ("super_resolution/samples.png", "docs/demo_sr_samples.png"),
            "segmentation": ("segmentation/samples.png", "docs/demo_seg_samples.png")}
# Short task names for the headline table.
_SHORT = {"super_resolution": "super-resolution (MMagic EDSR x2)",
          "segmentation": "segmentation (MMSegmentation FCN)"}


def _page_pictures() -> Dict[str, str]:
    """The pictures as :data:`PAGE` links them (relative to its folder)."""
    folder = os.path.dirname(PAGE)
    return {task: os.path.relpath(docs, folder) for task, (_, docs) in PICTURES.items()}


def page_block(results: dict) -> str:
    """The text of ``docs/demo.md``'s block for a recorded run: the demo report's lead, its pictures
    in ``docs/``."""
    return render_summary(results, _page_pictures())


def headline_block(results: dict) -> str:
    """The README's text for a recorded run: one table, every headline metric of every task (arm minus
    baseline of the final values, with the 95% interval and the verdict)."""
    run = results["run"]
    seeds = sorted({len(v) for t in results["tasks"].values() for a in t["arms"].values() for v in a.values()})
    lines = [f"Preset `{run['preset']}` on {run['device_name']} ({run['device']}), "
             f"{'/'.join(map(str, seeds))} seeds per arm: final values, mean ± std over seeds, and the "
             "difference from the baseline with its 95% interval (IoU in points, PSNR in dB).", "",
             "| task | metric | arm vs baseline | baseline | arm | Δ [95% CI] | verdict |",
             "|---|---|---|---|---|---|---|"]
    for task, record in results["tasks"].items():
        for r in comparisons(task, record):
            base, ours, ci = difference_cells(task, r)
            lines.append(f"| {_SHORT.get(task, TASKS[task]['title'])} | {r['metric']} | `{r['arm']}` vs "
                         f"`{r['baseline']}` | {base} | {ours} | {ci} | {r['diff'].verdict()} |")
    return "\n".join(lines) + "\n"


def current_block(text: str, start: str = START, end: str = END) -> str:
    """The text between the markers (a ValueError when they are missing or out of order)."""
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"the file must hold the markers {start!r} and {end!r}, in that order")
    return text[i + len(start):j].strip("\n") + "\n"


def replace_block(text: str, block: str, start: str = START, end: str = END) -> str:
    current_block(text, start, end)  # checks the markers
    i, j = text.find(start) + len(start), text.find(end)
    return text[:i] + "\n" + block.strip("\n") + "\n" + text[j:]


def _rewrite(path: str, block: str, start: str, end: str) -> None:
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(replace_block(text, block, start, end))


def update(report_dir: str, repo: str = REPO) -> Tuple[str, str]:
    """Record the demo report in ``report_dir`` (its ``results.json`` and pictures into ``repo/docs``),
    rewrite ``docs/demo.md``'s block and the README's headline from the record, and return both blocks
    (page, headline)."""
    with open(os.path.join(report_dir, "results.json")) as f:
        results = json.load(f)
    os.makedirs(os.path.join(repo, "docs"), exist_ok=True)
    shutil.copyfile(os.path.join(report_dir, "results.json"), os.path.join(repo, RESULTS))
    for report_path, docs_path in PICTURES.values():
        shutil.copyfile(os.path.join(report_dir, report_path), os.path.join(repo, docs_path))
    page, headline = page_block(results), headline_block(results)
    _rewrite(os.path.join(repo, PAGE), page, START, END)
    _rewrite(os.path.join(repo, README), headline, HEADLINE_START, HEADLINE_END)
    return page, headline
