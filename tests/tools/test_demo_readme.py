"""The demo results in docs/demo.md and the README's headline table are the demo's rendering of the
recorded run, and the tool that records a run."""
import json
import os

import pytest

from experiments.demo import readme

from test_demo_report import results_record  # the record those tests render

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read(path):
    with open(os.path.join(REPO, path)) as f:
        return f.read()


def test_docs_demo_block_and_readme_headline_are_the_recorded_runs_rendering():
    results = json.loads(_read(readme.RESULTS))
    page = readme.current_block(_read(readme.PAGE))
    assert page == readme.page_block(results)
    headline = readme.current_block(_read(readme.README), readme.HEADLINE_START, readme.HEADLINE_END)
    assert headline == readme.headline_block(results)
    # the pictures the page links lie beside it, in docs/
    for _, docs_path in readme.PICTURES.values():
        assert os.path.isfile(os.path.join(REPO, docs_path)), docs_path
        assert f"]({os.path.basename(docs_path)})" in page, docs_path
    # every headline metric of every task has its row, and its figures are the page's
    rows = [line for line in headline.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == sum(len(readme.comparisons(task, record)) for task, record in results["tasks"].items())
    for row in rows:
        ci = row.split(" | ")[5]
        assert ci in page, ci
    # the recorded run is a full preset, not the pipeline check, with Welch's seeds
    assert results["run"]["preset"] in ("cpu", "gpu")
    assert all(len(v) >= 3 for t in results["tasks"].values() for a in t["arms"].values() for v in a.values())


def test_update_records_a_report_and_rewrites_only_the_blocks(tmp_path):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "demo.md").write_text(f"# title\n\nbefore\n{readme.START}\nold text\n{readme.END}\nafter\n")
    (repo / "README.md").write_text(
        f"# readme\n\nbefore\n{readme.HEADLINE_START}\nold table\n{readme.HEADLINE_END}\nafter\n")
    out = tmp_path / "demo_report"
    for report_path, _ in readme.PICTURES.values():
        (out / report_path).parent.mkdir(parents=True, exist_ok=True)
        (out / report_path).write_bytes(b"png of " + report_path.encode())
    (out / "results.json").write_text(json.dumps(results_record()))
    page, headline = readme.update(str(out), str(repo))
    text = (repo / "docs" / "demo.md").read_text()
    assert text.startswith("# title\n\nbefore\n" + readme.START + "\n") and text.endswith(readme.END + "\nafter\n")
    assert readme.current_block(text) == page == readme.page_block(results_record())
    assert "old text" not in text
    readme_text = (repo / "README.md").read_text()
    assert readme_text.startswith("# readme\n\nbefore\n" + readme.HEADLINE_START + "\n")
    assert readme_text.endswith(readme.HEADLINE_END + "\nafter\n")
    assert readme.current_block(readme_text, readme.HEADLINE_START, readme.HEADLINE_END) == headline
    assert headline == readme.headline_block(results_record()) and "old table" not in readme_text
    assert json.loads((repo / readme.RESULTS).read_text()) == results_record()
    assert (repo / "docs" / "demo_seg_samples.png").read_bytes() == b"png of segmentation/samples.png"
    readme.update(str(out), str(repo))
    assert (repo / "docs" / "demo.md").read_text() == text  # idempotent
    assert (repo / "README.md").read_text() == readme_text
    with pytest.raises(ValueError, match="markers"):
        readme.replace_block("no markers here", page)
    with pytest.raises(ValueError, match="markers"):  # the page's markers are not the README's
        readme.current_block(text, readme.HEADLINE_START, readme.HEADLINE_END)
