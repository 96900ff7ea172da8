"""The README's demo results are the demo's rendering of the recorded run, and the tool that records a run."""
import json
import os

import pytest

from experiments.demo import readme

from test_demo_report import results_record  # the record those tests render

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_readme_demo_block_is_the_recorded_runs_rendering():
    with open(os.path.join(REPO, readme.RESULTS)) as f:
        results = json.load(f)
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    assert readme.current_block(text) == readme.readme_block(results)
    for _, docs_path in readme.PICTURES.values():
        assert os.path.isfile(os.path.join(REPO, docs_path)), docs_path
    # the recorded run is a full preset, not the pipeline check, with Welch's seeds
    assert results["run"]["preset"] in ("cpu", "gpu")
    assert all(len(v) >= 3 for t in results["tasks"].values() for a in t["arms"].values() for v in a.values())


def test_update_records_a_report_and_rewrites_only_the_block(tmp_path):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "README.md").write_text(f"# title\n\nbefore\n{readme.START}\nold text\n{readme.END}\nafter\n")
    out = tmp_path / "demo_report"
    for report_path, _ in readme.PICTURES.values():
        (out / report_path).parent.mkdir(parents=True, exist_ok=True)
        (out / report_path).write_bytes(b"png of " + report_path.encode())
    (out / "results.json").write_text(json.dumps(results_record()))
    block = readme.update(str(out), str(repo))
    text = (repo / "README.md").read_text()
    assert text.startswith("# title\n\nbefore\n" + readme.START + "\n") and text.endswith(readme.END + "\nafter\n")
    assert readme.current_block(text) == block == readme.readme_block(results_record())
    assert "old text" not in text
    assert json.loads((repo / readme.RESULTS).read_text()) == results_record()
    assert (repo / "docs" / "demo_seg_samples.png").read_bytes() == b"png of segmentation/samples.png"
    readme.update(str(out), str(repo))
    assert (repo / "README.md").read_text() == text  # idempotent
    with pytest.raises(ValueError, match="markers"):
        readme.replace_block("no markers here", block)


