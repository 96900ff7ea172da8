"""The README's demo results: the block between two markers in ``README.md``, rendered from the recorded
run ``docs/demo_results.json`` (a copy of a demo's ``results.json``) with the demo's own renderer.

    python tools/demo_readme.py demo_report    # after `make demo`: record that run and rewrite the block

:func:`update` copies the report's ``results.json`` and pictures into ``docs/`` and writes
:func:`readme_block` of it between the markers; a test checks that the README's block is that text, so
the README's figures are what the demo wrote.
"""
from __future__ import annotations

import json
import os
import shutil

from .report import render_summary

__all__ = ["START", "END", "RESULTS", "PICTURES", "readme_block", "current_block", "replace_block", "update"]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START = "<!-- demo results: written by `python tools/demo_readme.py demo_report`, do not edit by hand -->"
END = "<!-- end of demo results -->"
RESULTS = "docs/demo_results.json"
# task -> (the picture in a demo report, its copy in docs/)
PICTURES = {"super_resolution": ("super_resolution/samples.png", "docs/demo_sr_samples.png"),
            "segmentation": ("segmentation/samples.png", "docs/demo_seg_samples.png")}


def readme_block(results: dict) -> str:
    """The README's text for a recorded run: the demo report's lead, its pictures in ``docs/``."""
    return render_summary(results, {task: docs for task, (_, docs) in PICTURES.items()})


def current_block(readme_text: str) -> str:
    """The text between the markers (a ValueError when they are missing or out of order)."""
    start, end = readme_text.find(START), readme_text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README must hold the markers {START!r} and {END!r}, in that order")
    return readme_text[start + len(START):end].strip("\n") + "\n"


def replace_block(readme_text: str, block: str) -> str:
    current_block(readme_text)  # checks the markers
    start, end = readme_text.find(START) + len(START), readme_text.find(END)
    return readme_text[:start] + "\n" + block.strip("\n") + "\n" + readme_text[end:]


def update(report_dir: str, repo: str = REPO) -> str:
    """Record the demo report in ``report_dir`` (its ``results.json`` and pictures into ``repo/docs``) and
    rewrite the README's block from the record; return the block."""
    with open(os.path.join(report_dir, "results.json")) as f:
        results = json.load(f)
    os.makedirs(os.path.join(repo, "docs"), exist_ok=True)
    shutil.copyfile(os.path.join(report_dir, "results.json"), os.path.join(repo, RESULTS))
    for report_path, docs_path in PICTURES.values():
        shutil.copyfile(os.path.join(report_dir, report_path), os.path.join(repo, docs_path))
    readme = os.path.join(repo, "README.md")
    with open(readme) as f:
        text = f.read()
    block = readme_block(results)
    with open(readme, "w") as f:
        f.write(replace_block(text, block))
    return block
