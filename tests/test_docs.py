"""The README stays a five-minute read that points into docs/, its links and commands resolve, and the
documentation site builds without a warning."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md")) + sorted((DOCS / "results").glob("*.md"))

# A Markdown link or image: [text](target) / ![alt](target); the target up to a space or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _relative_links(path):
    """The relative link targets of a Markdown file (fenced code blocks left out), without anchors."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor in the same file
        targets.append(target.split("#", 1)[0])
    return targets


def test_readme_is_at_most_12_kib():
    assert len(README.read_bytes()) <= 12 * 1024


def test_the_docs_have_their_pages():
    names = {p.stem for p in DOCS.glob("*.md")}
    assert {"index", "getting_started", "mmseg", "mmagic", "mmdet", "detectron2", "losses", "train_test",
            "compare", "benchmarks", "demo", "ablation", "development", "citing", "api"} <= names
    assert (DOCS / "results" / "gpu_h200.md").is_file()


@pytest.mark.parametrize("path", [README] + PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_an_existing_file(path):
    targets = _relative_links(path)
    missing = [t for t in targets if not (path.parent / t).exists()]
    assert not missing, f"{path.relative_to(REPO)}: links to missing files {missing}"


def test_readme_links_into_every_docs_page():
    linked = {(README.parent / t).resolve() for t in _relative_links(README)}
    for page in ["getting_started", "mmseg", "mmagic", "mmdet", "detectron2", "losses", "train_test",
                 "compare", "demo", "ablation", "benchmarks", "development", "citing", "api"]:
        assert (DOCS / f"{page}.md").resolve() in linked, page


def test_the_readmes_two_commands_are_makefile_targets():
    readme = README.read_text()
    commands = re.findall(r"^\s+make (\S+)\s", readme, flags=re.M)
    assert {"demo", "test"} <= set(commands)
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, flags=re.M))
    for command in set(commands) | {"docs"}:
        assert command in targets, command


def test_the_docs_target_builds_with_warnings_as_errors():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ndocs:", 1)[1].split("\n\n", 1)[0]
    assert "docs/requirements.txt" in recipe
    assert "-m sphinx -W --keep-going -b html docs docs/_build/html" in recipe
    assert "make docs" in (REPO / ".ci" / "run").read_text()


def test_the_site_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    from sphinx.cmd.build import build_main
    # dummy: every page read, every cross-reference and docstring resolved, nothing written
    assert build_main(["-W", "-q", "-b", "dummy", str(DOCS), str(tmp_path / "out"),
                       "-d", str(tmp_path / "doctrees")]) == 0
